#pragma once
// Comm: the one interface every parallel algorithm talks to (ZeRO, LASP-2, pipeline, vocabulary
// parallelism). Backends: MpiComm (host buffers), NcclComm (device buffers) and SelfComm (size 1,
// no MPI at all: a single process is the layout dp=sp=pp=1 of the same code, not a mock).
//
// Contract shared by every backend:
//  - Every rank of the communicator calls each collective, in the same order, from the thread that
//    initialised the backend (MPI_THREAD_FUNNELED). Counts are per rank and equal on every rank.
//  - reduce_scatter_sum and all_gather move equal chunks of n elements per rank: a buffer whose
//    length does not divide by size() must be padded by the caller (ZeRO pads its flat buffers to a
//    multiple of dp). all_gather may run in place (send == recv + rank()*n); reduce_scatter_sum's
//    buffers must not overlap.
//  - Results are deterministic run to run for the same rank count and sizes: MPI's default
//    algorithm choice depends only on the communicator size, the message size and the operation,
//    so every run sums in the same order (NCCL likewise for a fixed topology). A different rank
//    count may round differently; layout-independent numbers are the callers' job (e.g. sum in
//    double, or in a fixed order).
//  - Nonblocking forms return a CommHandle; the buffers must stay alive and untouched until wait()
//    returns. Destroying a handle that was never waited waits, so a request is never leaked.
//  - Every operation is counted into stats() under the byte convention of comm_stats.h.
//  - Failures throw StrataError naming the operation and the communicator.
#include <cstdint>
#include <memory>
#include <string>

#include "parallel/comm_stats.h"

namespace strata {

// A backend's operation in flight.
class CommRequest {
 public:
  virtual ~CommRequest() = default;
  virtual void wait() = 0;  // blocks until complete; throws StrataError on failure
  virtual bool test() = 0;  // true once complete (wait() then returns at once)
};

// Owns one nonblocking operation. Movable, not copyable.
class CommHandle {
 public:
  CommHandle() = default;  // an already completed operation
  explicit CommHandle(std::unique_ptr<CommRequest> req) : req_(std::move(req)) {}
  CommHandle(CommHandle&&) noexcept = default;
  CommHandle& operator=(CommHandle&& o);  // waits for the operation it held first
  CommHandle(const CommHandle&) = delete;
  CommHandle& operator=(const CommHandle&) = delete;
  // Waits; a failure found here is logged, since a destructor must not throw.
  ~CommHandle();

  void wait();
  bool test();  // true once complete; the handle is then done()
  bool done() const { return !req_; }

 private:
  std::unique_ptr<CommRequest> req_;
};

enum class CommType { f32, f64, i64 };
enum class ReduceOp { sum, max };
int64_t comm_type_size(CommType t);

class Comm {
 public:
  explicit Comm(std::string axis);
  virtual ~Comm() = default;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "mpi", "nccl", "self"
  const std::string& axis() const { return stats_.axis; }
  // "dp rank 1/2 (mpi)": for error messages and logs.
  std::string describe() const;

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_.reset(); }

  // fp32 collectives (host buffers for MPI and self, device buffers for NCCL).
  void all_reduce_sum(float* buf, int64_t n);
  void all_reduce_max(float* buf, int64_t n);  // the online softmax's row maxima
  void reduce_scatter_sum(const float* send /*[size*n]*/, float* recv /*[n]*/, int64_t n);
  void all_gather(const float* send /*[n]*/, float* recv /*[size*n]*/, int64_t n);
  void broadcast(float* buf, int64_t n, int root);
  void broadcast_bytes(void* buf, int64_t bytes, int root);  // ids, strings, RNG states
  void barrier();

  // Point to point. A blocking send may wait for the matching recv (as MPI_Send may), so an
  // exchange between ranks uses send_recv or the nonblocking forms.
  void send(const float* buf, int64_t n, int dst, int tag);
  void recv(float* buf, int64_t n, int src, int tag);
  void send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf, int64_t recv_n,
                 int src, int tag);

  // Scalar reductions for loss sums, token counts, gradient norms, finiteness flags.
  void all_reduce_sum_double(double* buf, int64_t n);
  void all_reduce_max_double(double* buf, int64_t n);
  void all_reduce_sum_int64(int64_t* buf, int64_t n);
  void all_reduce_max_int64(int64_t* buf, int64_t n);

  // Nonblocking forms (same arguments and counting as the blocking ones).
  [[nodiscard]] CommHandle iall_reduce_sum(float* buf, int64_t n);
  [[nodiscard]] CommHandle ireduce_scatter_sum(const float* send, float* recv, int64_t n);
  [[nodiscard]] CommHandle iall_gather(const float* send, float* recv, int64_t n);
  [[nodiscard]] CommHandle isend(const float* buf, int64_t n, int dst, int tag);
  [[nodiscard]] CommHandle irecv(float* buf, int64_t n, int src, int tag);
  [[nodiscard]] CommHandle ibroadcast(float* buf, int64_t n, int root);

  // The log-domain sum of `rows` records of `row_len` floats each, in place and nonblocking:
  // a record is [m | a_1..a_k | b_1..b_(row_len-1-k)] with k = `scaled`, standing for the values
  // exp(m) a_i and the plain values b_j. Two records combine to M = max(m, m'),
  // a_i exp(m - M) + a'_i exp(m' - M), b_j + b'_j (a record with m = -inf adds nothing to the
  // a's). The online softmax's statistics meet in one such call (models/vocab_head.h) instead of a
  // MAX all-reduce and a SUM all-reduce that has to wait for it. The combine is exactly
  // commutative, so every rank gets the same bits. Counted as an all-reduce of rows * row_len.
  [[nodiscard]] CommHandle iall_reduce_scaled_rows(float* buf, int64_t rows, int64_t row_len,
                                                   int64_t scaled);

  // Collective over this communicator: ranks with the same color form a new communicator, ordered
  // by key (ties by rank here). color < 0: this rank joins none and gets nullptr. `axis` names the
  // new communicator's stats.
  std::unique_ptr<Comm> split(int color, int key, std::string axis);

 protected:
  // Backends implement these; the public wrappers check arguments and count first.
  virtual void do_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op) = 0;
  virtual void do_reduce_scatter_sum(const float* send, float* recv, int64_t n) = 0;
  virtual void do_all_gather(const float* send, float* recv, int64_t n) = 0;
  virtual void do_broadcast(void* buf, int64_t bytes, int root) = 0;
  virtual void do_barrier() = 0;
  virtual void do_send(const float* buf, int64_t n, int dst, int tag) = 0;
  virtual void do_recv(float* buf, int64_t n, int src, int tag) = 0;
  virtual void do_send_recv(const float* send_buf, int64_t send_n, int dst, float* recv_buf,
                            int64_t recv_n, int src, int tag) = 0;
  virtual CommHandle do_iall_reduce_sum(float* buf, int64_t n) = 0;
  virtual CommHandle do_ireduce_scatter_sum(const float* send, float* recv, int64_t n) = 0;
  virtual CommHandle do_iall_gather(const float* send, float* recv, int64_t n) = 0;
  virtual CommHandle do_isend(const float* buf, int64_t n, int dst, int tag) = 0;
  virtual CommHandle do_irecv(float* buf, int64_t n, int src, int tag) = 0;
  virtual CommHandle do_ibroadcast(float* buf, int64_t n, int root) = 0;
  virtual CommHandle do_iall_reduce_scaled_rows(float* buf, int64_t rows, int64_t row_len,
                                                int64_t scaled) = 0;
  virtual std::unique_ptr<Comm> do_split(int color, int key, std::string axis) = 0;

 private:
  void check_count(int64_t n, const char* op) const;
  void check_peer(int peer, const char* what, const char* op) const;
  void check_scatter_gather(const float* send, const float* recv, int64_t n, bool gather) const;
  void scalar_all_reduce(void* buf, int64_t n, CommType t, ReduceOp op);

  CommStats stats_;
};

}  // namespace strata
