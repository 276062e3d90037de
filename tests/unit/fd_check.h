#pragma once
// The element-by-element finite-difference check of the op tests (in double, central
// differences), shared so every op is held to the same step and tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

namespace strata::test {

// Checks the analytic gradient `grad` of the scalar f at x by central differences.
inline void expect_grad(std::vector<double>& x, const std::vector<double>& grad,
                        const std::function<double()>& f, double tolerance = 1e-6) {
  ASSERT_EQ(x.size(), grad.size());
  const double h = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double fp = f();
    x[i] = keep - h;
    const double fm = f();
    x[i] = keep;
    const double fd = (fp - fm) / (2 * h);
    EXPECT_NEAR(grad[i], fd, tolerance * (1 + std::abs(fd))) << "element " << i;
  }
}

}  // namespace strata::test
