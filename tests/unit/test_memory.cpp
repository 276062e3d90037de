// Memory accounting: every FloatBuffer is charged to its category, peaks are tracked, and the
// optional cap refuses an allocation before it happens, naming the category.
#include <gtest/gtest.h>

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
    EXPECT_EQ(during.current[int(MemCategory::grads)] - before.current[int(MemCategory::grads)], 40);
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
