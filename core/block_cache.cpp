#include "core/block_cache.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/memory.h"

namespace strata {

namespace {

struct Cache {
  std::mutex mu;
  std::map<std::pair<int64_t, int64_t>, std::vector<void*>> free;  // (bytes, align) -> blocks
  int64_t bytes = 0;
};

// Never destroyed: FloatBuffers in other static objects may be freed after it would be.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

void* block_cache_take(int64_t bytes, int64_t align) {
  if (bytes < kBlockCacheMinBytes) return nullptr;
  Cache& c = cache();
  const MemoryTracker& t = MemoryTracker::instance();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.free.find({bytes, align});
  if (it != c.free.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    c.bytes -= bytes;
    return p;
  }
  // A miss: the caller allocates fresh memory (already charged). Under a cap, free cached blocks
  // until the live bytes and the cache fit in it again.
  const int64_t limit = t.limit();
  for (auto& [key, blocks] : c.free)
    while (limit > 0 && !blocks.empty() && t.total_current() + c.bytes > limit) {
      std::free(blocks.back());
      blocks.pop_back();
      c.bytes -= key.first;
    }
  return nullptr;
}

void block_cache_give(void* p, int64_t bytes, int64_t align) {
  if (bytes >= kBlockCacheMinBytes) {
    Cache& c = cache();
    const MemoryTracker& t = MemoryTracker::instance();
    const int64_t limit = t.limit();
    std::lock_guard<std::mutex> lock(c.mu);
    const bool fits = c.bytes + bytes <= kBlockCacheMaxBytes &&
                      (limit <= 0 || t.total_current() + c.bytes + bytes <= limit);
    if (fits) {
      c.free[{bytes, align}].push_back(p);
      c.bytes += bytes;
      return;
    }
  }
  std::free(p);
}

void block_cache_clear() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [key, blocks] : c.free)
    for (void* p : blocks) std::free(p);
  c.free.clear();
  c.bytes = 0;
}

int64_t block_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.bytes;
}

}  // namespace strata
