#pragma once
// Freed large FloatBuffer blocks kept for the next allocation of the same size. A step
// allocates and frees the same activation shapes in every block and every step; glibc hands
// blocks this large back to the OS on free, so each fresh one costs a page fault per page on
// first touch (the zeroing in FloatBuffer's constructor): most of a step's untracked "other"
// time. A cached block is reused as is (FloatBuffer still zeroes it, now without faults).
//
// Bounded: at most kBlockCacheMaxBytes held, only blocks of at least kBlockCacheMinBytes, and
// under a memory cap (MemoryTracker::limit) the live tracked bytes plus the cache stay within
// it, so the cap still bounds real memory. Thread-safe.
#include <cstdint>

namespace strata {

constexpr int64_t kBlockCacheMinBytes = int64_t{1} << 20;
constexpr int64_t kBlockCacheMaxBytes = int64_t{1} << 30;

// A cached block of exactly `bytes` with alignment `align`, or nullptr.
void* block_cache_take(int64_t bytes, int64_t align);
// Keeps the block (FloatBuffer's, for std::free) for reuse, or frees it.
void block_cache_give(void* p, int64_t bytes, int64_t align);
// Frees every cached block (tests; memory returned to the OS).
void block_cache_clear();
// Bytes held by the cache now.
int64_t block_cache_bytes();

}  // namespace strata
