// Guards against known miscompilations of the toolchain and flags the project builds with.
#include <gtest/gtest.h>

#include <vector>

#include "offload/activation_store.h"

namespace strata {
namespace {

// GCC 12.2 with AVX-512 (-march=native on this machine) folded this initializer into eight
// copies of its first value through the SLP vectoriser; CMakeLists.txt turns that pass off.
__attribute__((noinline)) std::vector<ActivationPolicy> mixed_policies() {
  return {ActivationPolicy::swap, ActivationPolicy::swap, ActivationPolicy::swap,
          ActivationPolicy::swap, ActivationPolicy::keep, ActivationPolicy::keep,
          ActivationPolicy::keep, ActivationPolicy::keep};
}

TEST(Toolchain, ConstantVectorInitialisersSurvive) {
  const std::vector<ActivationPolicy> v = mixed_policies();
  ASSERT_EQ(v.size(), 8u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(v[i], ActivationPolicy::swap) << i;
  for (size_t i = 4; i < 8; ++i) EXPECT_EQ(v[i], ActivationPolicy::keep) << i;
}

}  // namespace
}  // namespace strata
