// core/block_cache.h: a freed large FloatBuffer's block is reused by the next buffer of the same
// size (still zeroed, still charged), small ones are not cached, and under a memory cap the
// cache gives memory back so live + cached bytes stay within the cap.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/block_cache.h"
#include "core/memory.h"

namespace strata {
namespace {

constexpr int64_t kBig = kBlockCacheMinBytes / int64_t(sizeof(float)) * 2;  // 2 MiB of floats

TEST(BlockCache, ReusesAFreedBlockZeroedAndCharged) {
  block_cache_clear();
  const float* first = nullptr;
  {
    FloatBuffer a(kBig, MemCategory::activations);
    first = a.data();
    std::fill(a.data(), a.data() + kBig, 3.f);
  }
  EXPECT_EQ(block_cache_bytes(), kBig * int64_t(sizeof(float)));
  const int64_t before = MemoryTracker::instance().snapshot().total_current;
  FloatBuffer b(kBig, MemCategory::activations);
  EXPECT_EQ(b.data(), first);  // the same block back
  EXPECT_EQ(block_cache_bytes(), 0);
  EXPECT_EQ(MemoryTracker::instance().snapshot().total_current - before,
            kBig * int64_t(sizeof(float)));
  EXPECT_TRUE(std::all_of(b.data(), b.data() + kBig, [](float v) { return v == 0.f; }));
}

TEST(BlockCache, SmallBlocksAndOtherSizesAreNotShared) {
  block_cache_clear();
  { FloatBuffer small(1000, MemCategory::activations); }
  EXPECT_EQ(block_cache_bytes(), 0);
  { FloatBuffer a(kBig, MemCategory::activations); }
  FloatBuffer other(kBig + 16, MemCategory::activations);  // a different size: a fresh block
  EXPECT_EQ(block_cache_bytes(), kBig * int64_t(sizeof(float)));
  block_cache_clear();
  EXPECT_EQ(block_cache_bytes(), 0);
}

TEST(BlockCache, StaysWithinTheMemoryCap) {
  block_cache_clear();
  MemoryTracker& t = MemoryTracker::instance();
  const int64_t bytes = kBig * int64_t(sizeof(float));
  t.set_limit(t.total_current() + 3 * bytes);
  { FloatBuffer a(kBig, MemCategory::activations); }
  EXPECT_EQ(block_cache_bytes(), bytes);
  {
    // Two live buffers of another size: live + cached would pass the cap, so the cached
    // block is freed on the miss.
    FloatBuffer b(kBig + 16, MemCategory::activations), c(kBig + 16, MemCategory::activations);
    EXPECT_LE(t.total_current() + block_cache_bytes(), t.limit());
  }
  EXPECT_LE(t.total_current() + block_cache_bytes(), t.limit());
  t.set_limit(0);
  block_cache_clear();
}

}  // namespace
}  // namespace strata
