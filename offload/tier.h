#pragma once
// Where the `swap` activation policy puts saved activations between a block's forward and its
// backward. One small interface, three backends:
//   host  page-locked HostPool memory (no file): frees activation memory, not host memory;
//   nvme  one O_DIRECT file per rank under offload.dir, written through IoEngine, so the data
//         leaves RAM entirely (and stays out of the page cache);
//   cxl   host memory bound to a (usually CPU-less, CXL-attached) NUMA node with libnuma.
// Two ways in and out:
//   write(src)/read(dst)           copy: the payload is copied out of src before write returns;
//   write_buffer()/read_buffer()   zero-copy where the backend allows (nvme): the tier takes the
//                                  page-aligned buffer itself, transfers straight from it and frees
//                                  it when the write completes; the read-back lands in a fresh
//                                  buffer that is handed over as it is. A buffer whose write has
//                                  not been retired yet is handed back without any I/O.
// Writes finish asynchronously where the backend allows (nvme). Each handle is read exactly once:
// a read returns the bytes and releases the handle's space.
#include <cstdint>
#include <memory>
#include <string>

#include "core/memory.h"
#include "offload/host_pool.h"
#include "offload/io_engine.h"

namespace strata {

enum class SwapTierKind { host, nvme, cxl };
SwapTierKind parse_swap_tier(const std::string& s);  // InputError naming offload.tier
const char* swap_tier_name(SwapTierKind k);

struct SwapOptions {
  SwapTierKind tier = SwapTierKind::nvme;
  std::string dir = "/tmp/strata_swap";  // nvme: where the swap file lives
  int64_t capacity_bytes = 16ll << 30;   // most bytes the tier holds at once
  std::string cxl_node = "auto";         // cxl: "auto" (a CPU-less node) or a node number
  int rank = 0;                          // names the swap file
  IoOptions io;                          // nvme: backend, queue depth, block size
  // nvme: CRC-32C of every payload, checked on read (truncation is detected without it)
  bool checksums = false;
};

class SwapTier {
 public:
  using Handle = int64_t;
  // The tier for `o`; a cxl tier with cxl_node=auto on a machine without a CPU-less node is a
  // host tier (with a warning). A cxl_node that does not exist is an InputError.
  static std::unique_ptr<SwapTier> create(const SwapOptions& o);
  virtual ~SwapTier() = default;

  // Copies `bytes` from src into the tier (src is free to reuse on return). StrataError naming
  // the tier, its file and the capacity when the tier is full.
  virtual Handle write(const float* src, int64_t bytes) = 0;
  // Takes the buffer (any alignment; page-aligned FloatBuffers avoid every copy on nvme). While
  // the tier holds it in flight it is charged to MemCategory::io.
  virtual Handle write_buffer(FloatBuffer&& buf);
  // The handle's data as a buffer charged to `cat` (page-aligned, padded), and releases the handle.
  virtual FloatBuffer read_buffer(Handle h, MemCategory cat) = 0;
  // Starts bringing the handle back (a no-op for memory tiers) so read() finds it ready.
  virtual void prefetch(Handle h) = 0;
  // Waits for the handle's data, copies it to dst and releases the handle.
  virtual void read(Handle h, float* dst) = 0;
  // Releases a handle without reading it (data that will never be needed).
  virtual void discard(Handle h) = 0;
  // Waits until the handle's write has landed (its source freed, staging returned); a no-op for
  // a handle already read, discarded or written synchronously. ActivationStore bounds the
  // writes in flight with it (offload.writes_in_flight).
  virtual void wait_written(Handle /*h*/) {}  // a tier whose writes are synchronous
  // Retires finished asynchronous work (frees staging buffers) without blocking.
  virtual void poll() {}
  // Returns cached free staging memory to the system (e.g. after a bandwidth probe).
  virtual void trim() {}
  // The tier's page-locked pool (staging blocks, host-tier copies): what it holds and serves.
  virtual HostPoolStats pool_stats() const { return {}; }

  virtual const char* name() const = 0;            // "host", "nvme", "cxl"
  virtual std::string path() const { return ""; }  // the swap file (nvme) or ""
  virtual int64_t bytes_used() const = 0;          // payload bytes held (padding included)
  int64_t capacity() const { return capacity_; }

 protected:
  explicit SwapTier(int64_t capacity) : capacity_(capacity) {}
  // Throws the "tier full" StrataError (naming tier, file and capacity) when `more` bytes do
  // not fit.
  void check_capacity(int64_t more) const {
    if (bytes_used() + more > capacity_) throw_full(more);
  }
  [[noreturn]] void throw_full(int64_t more) const;

 private:
  int64_t capacity_;
};

// The swap file name of this process and rank under `dir` (strata_swap_<pid>_r<rank>[_<n>].bin:
// a second tier in the same process gets a sequence number).
std::string swap_file_path(const std::string& dir, int rank);
// Removes swap files under `dir` left by processes that no longer exist (kill(pid, 0) says
// ESRCH); returns how many were removed. Files of live processes are left alone.
int remove_stale_swap_files(const std::string& dir);

}  // namespace strata
