// Memory accounting: every FloatBuffer is charged to its category, peaks are tracked, and the
// optional cap refuses an allocation before it happens, naming the category.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/memory.h"

using namespace strata;

TEST(Memory, BuffersAreChargedAndReleased) {
  auto& t = MemoryTracker::instance();
  const auto before = t.snapshot();
  {
    FloatBuffer a(1000, MemCategory::activations), g(10, MemCategory::grads);
    const auto during = t.snapshot();
    EXPECT_EQ(during.current[int(MemCategory::activations)] -
                  before.current[int(MemCategory::activations)],
              4000);
    EXPECT_EQ(during.current[int(MemCategory::grads)] - before.current[int(MemCategory::grads)],
              40);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
    EXPECT_EQ(a[999], 0.f);  // zeroed
  }
  EXPECT_EQ(t.snapshot().total_current, before.total_current);
  EXPECT_GE(t.snapshot().total_peak, before.total_current + 4040);
}

TEST(Memory, CapRefusesBeforeAllocatingAndNamesTheCategory) {
  auto& t = MemoryTracker::instance();
  const int64_t held = t.snapshot().total_current;
  t.set_limit(held + 1000 * 4);
  FloatBuffer ok(900, MemCategory::params);
  try {
    FloatBuffer too_much(200, MemCategory::activations);
    ADD_FAILURE() << "the cap did not refuse";
  } catch (const StrataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("memory cap exceeded"), std::string::npos) << m;
    EXPECT_NE(m.find("activations"), std::string::npos) << m;
    EXPECT_NE(m.find("max_memory_mb"), std::string::npos) << m;
  }
  EXPECT_EQ(t.snapshot().total_current, held + 3600);  // nothing charged for the refused one
  t.set_limit(0);
}

// An uninitialised buffer is charged like a zeroed one, and what lies past its last float (the
// page padding a swap tier writes out) is zero even in a reused block that was dirty.
TEST(Memory, UninitialisedBuffersAreChargedAndTheirPaddingIsZero) {
  auto& t = MemoryTracker::instance();
  const int act = int(MemCategory::activations);
  const int64_t n = (int64_t{1} << 18) + 10;  // over 1 MiB, so a freed block is cached
  const int64_t before = t.snapshot().current[act];
  int64_t cap = 0;
  {
    FloatBuffer dirty(n, MemCategory::activations, FloatBuffer::kPageAlign);
    cap = dirty.capacity_bytes();
    for (int64_t i = 0; i < cap / 4; ++i) dirty.data()[i] = 1.f;
  }
  {
    FloatBuffer b =
        FloatBuffer::uninitialised(n, MemCategory::activations, FloatBuffer::kPageAlign);
    EXPECT_EQ(b.capacity_bytes(), cap);
    EXPECT_EQ(t.snapshot().current[act] - before, cap);
    for (int64_t i = n; i < cap / 4; ++i) ASSERT_EQ(b.data()[i], 0.f) << i;
  }
  EXPECT_EQ(t.snapshot().current[act], before);
}

namespace {

// The VmFlags line of the /proc/self/smaps mapping that holds address p ("" if none).
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto a = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' '))
      inside = a >= lo && a < hi;
    else if (inside && line.rfind("VmFlags:", 0) == 0)
      return line;
  }
  return "";
}

}  // namespace

// A buffer of a huge page or more starts on a 2 MiB boundary and its mapping carries the
// transparent-huge-page advice (smaps' "hg"); a small one is left as it was.
TEST(Memory, LargeBuffersAreHugePageAlignedAndAdvised) {
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled"))
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  const int64_t n = 3 * FloatBuffer::kHugePageBytes / 4 + 100;  // 6 MiB and a bit
  for (bool zeroed : {true, false}) {
    FloatBuffer b = zeroed ? FloatBuffer(n, MemCategory::activations)
                           : FloatBuffer::uninitialised(n, MemCategory::activations);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % FloatBuffer::kHugePageBytes, 0u);
    EXPECT_NE(vm_flags_of(b.data()).find(" hg"), std::string::npos) << vm_flags_of(b.data());
    EXPECT_EQ(b.capacity_bytes(), FloatBuffer::capacity_for(n));  // not padded to 2 MiB
  }
  FloatBuffer small(1000, MemCategory::activations);
  EXPECT_EQ(vm_flags_of(small.data()).find(" hg"), std::string::npos);
}
