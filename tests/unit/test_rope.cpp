// RoPE (rotate-half, MODEL.md): hand-computed values, adjointness of the backward, norm
// preservation, global positions via pos0, and accuracy at large positions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/rope.h"
#include "op_test_util.h"

namespace strata {
namespace {

using test::randn;
using test::rel_err;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(Rope, HandComputedValues) {
  // dh = 4, theta = 1e4: f_0 = 1, f_1 = 1e4^(-1/2) = 0.01. Positions 0, 1 (pos0 = 0), and
  // pos0 = 2 for the second call so the tokens sit at 2, 3. Expected values from Python.
  std::vector<double> x = {1, 2, 3, 4, 1, 2, 3, 4};  // [B=1, T=2, Hx=1, dh=4]
  rope_forward(x.data(), 1, 2, 1, 4, 0, 10000.f);
  const double want0[8] = {1,
                           2,
                           3,
                           4,  // position 0: identity
                           -1.9841106485555495,
                           1.9599006674966639,
                           2.4623779024123156,
                           4.0197996683349944};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(x[i], want0[i], 1e-12) << i;

  std::vector<double> y = {1, 2, 3, 4, 1, 2, 3, 4};
  rope_forward(y.data(), 1, 2, 1, 4, 2, 10000.f);
  const double want3[4] = {-1.413352520780047, 1.8791180666879925, -2.8288574817414691,
                           4.0581911354009419};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[4 + i], want3[i], 1e-12) << i;
}

TEST(Rope, BackwardIsAdjointAndInverse) {
  const int64_t B = 2, T = 9, Hx = 3, dh = 8, pos0 = 5;
  const size_t n = B * T * Hx * dh;
  const auto x = randn<double>(n, 1), y = randn<double>(n, 2);
  auto rx = x, ry = y;
  rope_forward(rx.data(), B, T, Hx, dh, pos0, 500.f);
  rope_backward(ry.data(), B, T, Hx, dh, pos0, 500.f);
  // <R x, y> == <x, Rᵀ y>
  EXPECT_NEAR(dot(rx, y), dot(x, ry), 1e-12 * std::sqrt(double(n)));
  // Rᵀ R = I
  rope_backward(rx.data(), B, T, Hx, dh, pos0, 500.f);
  for (size_t i = 0; i < n; ++i) EXPECT_NEAR(rx[i], x[i], 1e-13);
}

TEST(Rope, PreservesNormPerHead) {
  const int64_t B = 2, T = 7, Hx = 2, dh = 16;
  const auto x = randn<double>(B * T * Hx * dh, 3);
  auto r = x;
  rope_forward(r.data(), B, T, Hx, dh, 11, 10000.f);
  for (int64_t row = 0; row < B * T * Hx; ++row) {
    double a = 0, b = 0;
    for (int64_t j = 0; j < dh; ++j) {
      a += x[row * dh + j] * x[row * dh + j];
      b += r[row * dh + j] * r[row * dh + j];
    }
    EXPECT_NEAR(a, b, 1e-12 * a);
  }
  // And it does rotate (not the identity) away from position 0.
  EXPECT_GT(std::abs(r[dh] - x[dh]), 1e-3);
}

TEST(Rope, Pos0EqualsSlicingALongerSequence) {
  // Rotating tokens [4, 10) of a sequence with pos0 = 4 equals rotating the whole sequence and
  // taking those rows: what sequence parallelism relies on.
  const int64_t B = 2, T = 10, Hx = 2, dh = 6, start = 4;
  const auto x = randn<float>(B * T * Hx * dh, 4);
  auto full = x;
  rope_forward(full.data(), B, T, Hx, dh, 0, 10000.f);
  const int64_t row = Hx * dh;
  std::vector<float> part;
  for (int64_t b = 0; b < B; ++b)
    part.insert(part.end(), x.begin() + (b * T + start) * row, x.begin() + (b + 1) * T * row);
  rope_forward(part.data(), B, T - start, Hx, dh, start, 10000.f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < (T - start) * row; ++i)
      EXPECT_EQ(part[b * (T - start) * row + i], full[(b * T + start) * row + i]);
}

TEST(Rope, FloatAccurateAtLargePositions) {
  // At pos ~1e6 a float angle would be off by ~0.03 rad; angles in double keep the float
  // result within float rounding of the double one.
  const int64_t B = 1, T = 3, Hx = 2, dh = 64, pos0 = 1000000;
  const auto xd = randn<double>(B * T * Hx * dh, 5);
  std::vector<float> xf(xd.begin(), xd.end());
  std::vector<double> ref(xf.begin(), xf.end());
  rope_forward(xf.data(), B, T, Hx, dh, pos0, 10000.f);
  rope_forward(ref.data(), B, T, Hx, dh, pos0, 10000.f);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(xf[i], ref[i], 2e-6) << i;
}

TEST(Rope, OddHeadDimIsRejected) {
  std::vector<float> x(3);
  EXPECT_THROW(rope_forward(x.data(), 1, 1, 1, 3, 0, 10000.f), StrataError);
}

}  // namespace
}  // namespace strata
