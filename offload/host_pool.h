#pragma once
// Page-locked host memory for offload: the staging buffers of direct I/O and host<->device
// copies. Locked pages never fault or swap during a transfer, the GPU can DMA from them
// (cudaHostRegister) and io_uring can register them once instead of pinning per request.
//
// Size classes: a request of n bytes is served from class
//   round_up(n, max(4 KiB, bit_floor(n) / 4))
// i.e. four classes per power of two above 16 KiB and 4 KiB steps below. Waste per block is
// below max(4 KiB, n / 4): at most 25% for blocks of 16 KiB and up (no power-of-two doubling).
// Freed blocks go to a free list per class and are reused, so steady alloc/free cycles stop
// growing the pool after the first. Every block is its own mmap, hence 4 KiB (page) aligned.
#include <sys/uio.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/memory.h"

namespace strata {

struct HostPoolOptions {
  bool lock = true;                 // mlock every block
  bool fail_if_unlockable = false;  // mlock refused: throw (true) or warn once, go on (false)
  bool cuda_register = true;        // cudaHostRegister too (builds with CUDA only)
  MemCategory category = MemCategory::io;
};

struct HostPoolStats {
  int64_t bytes_held = 0;          // mapped by the pool: blocks in use plus free lists
  int64_t bytes_served = 0;        // requested by callers, summed over live allocations
  int64_t held_beyond_served = 0;  // bytes_held - bytes_served: rounding plus free lists
  int64_t bytes_locked = 0;        // of bytes_held, page-locked
  int64_t blocks_held = 0;
  int64_t blocks_free = 0;
  int64_t maps = 0;  // blocks ever mapped (reuse keeps it flat)
};

class HostPool {
 public:
  static constexpr int64_t kAlignment = 4096;
  explicit HostPool(HostPoolOptions options = {});
  ~HostPool();
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;

  // The class (block size) that serves a request of `bytes`.
  static int64_t class_size(int64_t bytes);

  // A block of class_size(bytes) bytes, 4 KiB aligned, zeroed on first mapping only.
  void* alloc(int64_t bytes);
  void free(void* p);
  // Unmaps every free block (their bytes leave bytes_held).
  void trim();

  HostPoolStats stats() const;
  // Every block held, sorted by address: the set to hand to IoEngine::register_buffers.
  std::vector<iovec> regions() const;
  // Whether blocks are being locked (false after mlock was refused and we went on unlocked).
  bool locking() const;

 private:
  struct Block {
    int64_t size = 0;
    int64_t served = 0;  // 0 when on a free list
    bool locked = false;
    bool cuda = false;
  };
  void unmap(void* p, const Block& b);
  bool lock_block(void* p, int64_t size);

  HostPoolOptions opt_;
  mutable std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;
  std::map<int64_t, std::vector<void*>> free_;  // class size -> free blocks
  HostPoolStats stats_;
  bool locking_ = true;
};

// The RLIMIT_MEMLOCK explanation used when mlock is refused (exposed for tests and tools).
std::string memlock_limit_message(int64_t bytes, int err);

}  // namespace strata
