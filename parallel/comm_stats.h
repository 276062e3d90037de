#pragma once
// Per-communicator counters: calls and bytes per operation, so tests can assert communication
// volumes (e.g. ZeRO-3 moves 3x the parameter bytes, LASP-2's state all-gather does not grow with
// the sequence) and logs can report them per mesh axis.
//
// Byte convention: the ZeRO paper's per-device data movement (Rajbhandari et al. 2020, section 7:
// an all-reduce of Psi elements "incurs 2 Psi data movement", a reduce-scatter or an all-gather of
// Psi incurs Psi). Psi is the whole logical buffer the collective acts on, counted on every rank:
//   all_reduce      over n elements                     counts 2 * n * elem_size
//   reduce_scatter  send [size*n] -> recv [n]           counts size * n * elem_size
//   all_gather      send [n]      -> recv [size*n]      counts size * n * elem_size
//   broadcast       of n elements                       counts n * elem_size (root and receivers)
//   send / recv     of n elements                       counts n * elem_size on the sending /
//                                                       receiving rank
//   barrier                                             counts a call, 0 bytes
// Hence reduce-scatter + all-gather of a buffer count exactly what an all-reduce of it counts.
// A bandwidth-optimal (ring) algorithm puts (size-1)/size of these bytes on each rank's link; the
// counters leave that factor out so a volume reads the same for every layout. A size-1
// communicator counts the same logical volume even though nothing leaves the process.
// Nonblocking operations are counted when posted.
#include <array>
#include <cstdint>
#include <string>

namespace strata {

enum class CommOp : int {
  all_reduce,
  reduce_scatter,
  all_gather,
  broadcast,
  send,
  recv,
  barrier,
  count
};
constexpr int kNumCommOps = static_cast<int>(CommOp::count);
const char* comm_op_name(CommOp op);

struct CommOpStats {
  int64_t calls = 0;
  int64_t bytes = 0;
};

struct CommStats {
  std::string axis;  // "world", "dp", "sp", "pp", ...
  std::array<CommOpStats, kNumCommOps> ops{};

  const CommOpStats& operator[](CommOp op) const { return ops[static_cast<int>(op)]; }
  void add(CommOp op, int64_t bytes) {
    auto& s = ops[static_cast<int>(op)];
    ++s.calls;
    s.bytes += bytes;
  }
  int64_t total_calls() const;
  int64_t total_bytes() const;
  void reset() { ops = {}; }
};

// "dp: all_reduce 3 calls 1.5MiB, broadcast 1 call 4B" (ops never called are left out;
// "dp: none" when nothing was called).
std::string format_comm_stats(const CommStats& s);

}  // namespace strata
