#include "offload/host_pool.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/log.h"

#ifdef STRATA_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace strata {

namespace {

std::string limit_text(rlim_t v) {
  if (v == RLIM_INFINITY) return "unlimited";
  return format_bytes(static_cast<int64_t>(v));
}

}  // namespace

std::string memlock_limit_message(int64_t bytes, int err) {
  rlimit rl{};
  getrlimit(RLIMIT_MEMLOCK, &rl);
  return "mlock of " + format_bytes(bytes) + " of host I/O buffers failed: " + std::strerror(err) +
         ". RLIMIT_MEMLOCK is " + limit_text(rl.rlim_cur) + " (hard " + limit_text(rl.rlim_max) +
         "); raise it with `ulimit -l unlimited` in the launching shell (above the hard limit: "
         "memlock in /etc/security/limits.conf, or `docker run --ulimit memlock=-1`)";
}

int64_t HostPool::class_size(int64_t bytes) {
  STRATA_CHECK(bytes > 0, "HostPool request of " + std::to_string(bytes) + " bytes");
  const auto floor = static_cast<int64_t>(std::bit_floor(static_cast<uint64_t>(bytes)));
  const int64_t step = std::max<int64_t>(kAlignment, floor / 4);
  return (bytes + step - 1) / step * step;
}

HostPool::HostPool(HostPoolOptions options) : opt_(options), locking_(options.lock) {}

HostPool::~HostPool() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [p, b] : blocks_) unmap(p, b);
  blocks_.clear();
  free_.clear();
}

bool HostPool::lock_block(void* p, int64_t size) {
  if (!locking_) return false;
  if (mlock(p, static_cast<size_t>(size)) == 0) return true;
  const int err = errno;
  const std::string msg = memlock_limit_message(size, err);
  if (opt_.fail_if_unlockable) throw StrataError(msg);
  // Only the first refusal is reported: later blocks would fail the same way.
  log_warn(msg + "; continuing with unlocked (pageable) host memory");
  locking_ = false;
  return false;
}

void* HostPool::alloc(int64_t bytes) {
  const int64_t size = class_size(bytes);
  std::lock_guard<std::mutex> lk(mu_);
  void* p = nullptr;
  auto fl = free_.find(size);
  if (fl != free_.end() && !fl->second.empty()) {
    p = fl->second.back();
    fl->second.pop_back();
    --stats_.blocks_free;
  } else {
    // Charge first: a memory cap refuses the block before anything is mapped.
    MemoryTracker::instance().charge(opt_.category, size);
    p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      MemoryTracker::instance().release(opt_.category, size);
      throw StrataError("HostPool: mmap of " + format_bytes(size) +
                        " failed: " + std::strerror(err));
    }
    Block b;
    b.size = size;
    try {
      b.locked = lock_block(p, size);
    } catch (...) {
      munmap(p, static_cast<size_t>(size));
      MemoryTracker::instance().release(opt_.category, size);
      throw;
    }
#ifdef STRATA_HAVE_CUDA
    if (opt_.cuda_register) {
      // Without a device (or driver) this fails; the memory is still good for host I/O.
      b.cuda =
          cudaHostRegister(p, static_cast<size_t>(size), cudaHostRegisterDefault) == cudaSuccess;
      if (!b.cuda) cudaGetLastError();  // reset the (non-sticky) error so later calls miss it
    }
#endif
    blocks_[p] = b;
    stats_.bytes_held += size;
    stats_.bytes_locked += b.locked ? size : 0;
    ++stats_.blocks_held;
    ++stats_.maps;
  }
  blocks_[p].served = bytes;
  stats_.bytes_served += bytes;
  return p;
}

void HostPool::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = blocks_.find(p);
  STRATA_CHECK(it != blocks_.end() && it->second.served > 0,
               "HostPool::free of a pointer it did not hand out (or freed twice)");
  stats_.bytes_served -= it->second.served;
  it->second.served = 0;
  free_[it->second.size].push_back(p);
  ++stats_.blocks_free;
}

void HostPool::unmap(void* p, const Block& b) {
#ifdef STRATA_HAVE_CUDA
  if (b.cuda) cudaHostUnregister(p);
#endif
  if (b.locked) munlock(p, static_cast<size_t>(b.size));
  munmap(p, static_cast<size_t>(b.size));
  MemoryTracker::instance().release(opt_.category, b.size);
}

void HostPool::trim() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [size, list] : free_) {
    for (void* p : list) {
      auto it = blocks_.find(p);
      const Block b = it->second;
      blocks_.erase(it);
      unmap(p, b);
      stats_.bytes_held -= b.size;
      stats_.bytes_locked -= b.locked ? b.size : 0;
      --stats_.blocks_held;
      --stats_.blocks_free;
    }
    list.clear();
  }
}

HostPoolStats HostPool::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  HostPoolStats s = stats_;
  s.held_beyond_served = s.bytes_held - s.bytes_served;
  return s;
}

std::vector<iovec> HostPool::regions() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<iovec> v;
  v.reserve(blocks_.size());
  for (auto& [p, b] : blocks_) v.push_back({p, static_cast<size_t>(b.size)});
  std::sort(v.begin(), v.end(),
            [](const iovec& a, const iovec& b) { return a.iov_base < b.iov_base; });
  return v;
}

bool HostPool::locking() const {
  std::lock_guard<std::mutex> lk(mu_);
  return locking_;
}

}  // namespace strata
