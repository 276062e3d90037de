// core/vexp.h: accuracy of exp_f32 in ulp against the correctly rounded exp (std::exp in
// double, rounded to float), the edge cases, and the vector and scalar code paths giving the
// same bits (exp, the shifted-exp array helpers, sigmoid through the SwiGLU kernels).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "core/vexp.h"
#include "models/swiglu.h"

namespace strata {
namespace {

// Distance in representable floats between two finite floats of the same sign (or zero).
int64_t ulp_diff(float a, float b) {
  const auto key = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? int64_t(INT32_MIN) - i : int64_t(i);  // monotonic in f
  };
  return std::llabs(key(a) - key(b));
}

float ref_exp(float x) { return static_cast<float>(std::exp(static_cast<double>(x))); }

// Values over exp's whole float range, plus the awkward ones: tiny, the overflow and underflow
// thresholds, half-integers of log2 e (where n = rint(x log2 e) switches).
std::vector<float> sample_inputs() {
  std::vector<float> xs;
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> wide(-105.f, 89.f), narrow(-2.f, 2.f);
  for (int i = 0; i < 400000; ++i) xs.push_back(wide(rng));
  for (int i = 0; i < 100000; ++i) xs.push_back(narrow(rng));
  for (float x = -1e-6f; x < 1e-6f; x += 1.7e-9f) xs.push_back(x);
  for (int k = -150; k <= 128; ++k) {
    const float c = (k + 0.5f) * 0.693147181f;
    for (float x = std::nextafter(c, -1e9f), i = 0; i < 8; ++i, x = std::nextafter(x, 1e9f))
      xs.push_back(x);
  }
  for (float c : {88.72283f, -87.33654f, -103.27893f, -103.97208f})
    for (float x = c - 1e-4f; x < c + 1e-4f; x = std::nextafter(x, 1e9f)) xs.push_back(x);
  return xs;
}

TEST(Vexp, WithinOneUlpOfCorrectlyRoundedExp) {
  int64_t worst = 0;
  float worst_x = 0;
  for (float x : sample_inputs()) {
    const float want = ref_exp(x), got = exp_f32(x);
    if (std::isinf(want)) {
      EXPECT_TRUE(std::isinf(got) && got > 0) << x;
      continue;
    }
    const int64_t d = ulp_diff(got, want);
    if (d > worst) worst = d, worst_x = x;
  }
  EXPECT_LE(worst, 1) << "at x = " << worst_x;
}

TEST(Vexp, EdgeCases) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(exp_f32(0.f), 1.f);
  EXPECT_EQ(exp_f32(-0.f), 1.f);
  for (float x : {-104.f, -200.f, -1e30f, -inf}) EXPECT_EQ(exp_f32(x), 0.f) << x;
  for (float x : {88.73f, 89.f, 1000.f, 1e30f, inf}) EXPECT_EQ(exp_f32(x), inf) << x;
  // The last finite result and the first overflow, as the correctly rounded exp has them.
  EXPECT_TRUE(std::isfinite(exp_f32(88.72283f)));
  EXPECT_EQ(exp_f32(88.72284f), inf);
  EXPECT_GT(exp_f32(-103.f), 0.f);  // a subnormal, not flushed
  EXPECT_TRUE(std::isnan(exp_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(exp_f32(-std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(sigmoid_v(-inf), 0.f);
  EXPECT_EQ(sigmoid_v(inf), 1.f);
  EXPECT_EQ(sigmoid_v(0.f), 0.5f);
}

// Array inputs including every edge case, at a length that leaves a scalar tail.
std::vector<float> array_inputs() {
  std::vector<float> xs = sample_inputs();
  xs.resize(100003);
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.f,
                            -0.f,
                            inf,
                            -inf,
                            std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            88.72284f,
                            -103.f};
  for (size_t i = 0; i < xs.size(); i += 997) xs[i] = specials[(i / 997) % 8];
  return xs;
}

// Same bits, but any NaN equals any NaN: a NaN's sign and payload depend on operand order, which
// the compiler may commute in the scalar reference expressions below.
bool same_bits(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

TEST(Vexp, ArrayPathsMatchScalarBits) {
  const std::vector<float> xs = array_inputs();
  const float shift = 0.375f, scale = -0.8125f;
  std::vector<float> a = xs, b = xs;
  exp_shift_scale(a.data(), int64_t(a.size()), shift, scale);
  const double sum = exp_shift_sum(xs.data(), b.data(), int64_t(b.size()), shift);
  double acc[16] = {};
  for (size_t i = 0; i < xs.size(); ++i) {
    const float e = exp_f32(xs[i] - shift);
    ASSERT_TRUE(same_bits(a[i], scale * e)) << i << " x = " << xs[i];
    ASSERT_TRUE(same_bits(b[i], e)) << i << " x = " << xs[i];
    acc[i % 16] += e;
  }
  double want = 0;
  for (double v : acc) want += v;
  EXPECT_TRUE(std::isnan(want) ? std::isnan(sum) : sum == want);
}

// vsqrt (AdamW's denominator) is the correctly rounded square root on both lanes: the double
// root rounded to float (exact for floats, double having more than 2 * 24 + 2 bits), -0 kept,
// NaN for negatives, over a length with a vector body and a scalar tail.
TEST(Vexp, SqrtLanesAreCorrectlyRounded) {
  std::vector<float> xs = array_inputs();
  for (float& x : xs) x = std::ldexp(x, 20) * std::fabs(x);  // sign kept, magnitudes spread
  xs.insert(xs.end(), {0.f, -0.f, std::numeric_limits<float>::infinity(),
                       std::numeric_limits<float>::denorm_min(), -1.f, 2.f, 3.f});
  std::vector<float> got(xs.size());
  for_lanes(0, int64_t(xs.size()), [&](auto lane, int64_t i) {
    vstore(got.data() + i, vsqrt(vload(xs.data() + i, lane)));
  });
  for (size_t i = 0; i < xs.size(); ++i)
    ASSERT_TRUE(same_bits(got[i], static_cast<float>(std::sqrt(static_cast<double>(xs[i])))))
        << i << " x = " << xs[i];
}

// max_of is the loop of std::max(mx, x[i]) it stands for, on either code path: lengths with and
// without a vector tail, NaNs skipped wherever they sit, -inf for none; double the same.
TEST(Vexp, MaxOfIsTheScalarLoop) {
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 10.f);
  for (int64_t n : {0, 1, 15, 16, 17, 100}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& e : x) e = nd(g);
    if (n > 3) x[1] = x[n - 2] = std::numeric_limits<float>::quiet_NaN();
    float want = -std::numeric_limits<float>::infinity();
    for (float e : x) want = std::max(want, e);
    EXPECT_EQ(max_of(x.data(), n), want) << n;
    const std::vector<double> xd(x.begin(), x.end());
    EXPECT_EQ(max_of(xd.data(), n), double(want)) << n;
  }
}

TEST(Vexp, SwigluVectorMatchesScalarBits) {
  const std::vector<float> g = array_inputs();
  std::vector<float> u(g.size()), d(g.size());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (auto& v : u) v = nd(rng);
  for (auto& v : d) v = nd(rng);
  const int64_t n = int64_t(g.size());
  std::vector<float> act(g.size()), dg(g.size()), du(g.size()), fm(g.size()), dfm(g.size());
  swiglu_forward(g.data(), u.data(), act.data(), n);
  swiglu_backward(g.data(), u.data(), d.data(), dg.data(), du.data(), n);
  feature_map_forward(g.data(), fm.data(), n, true, 0.5f);
  feature_map_backward(g.data(), d.data(), dfm.data(), n, true, 0.5f);
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid_v(g[i]);
    ASSERT_TRUE(same_bits(act[i], g[i] * s * u[i])) << i;
    ASSERT_TRUE(same_bits(du[i], d[i] * (g[i] * s))) << i;
    ASSERT_TRUE(same_bits(dg[i], d[i] * u[i] * (s * std::fma(g[i], 1.f - s, 1.f)))) << i;
    ASSERT_TRUE(same_bits(fm[i], 0.5f * (g[i] * s))) << i;
    ASSERT_TRUE(same_bits(dfm[i], 0.5f * d[i] * (s * std::fma(g[i], 1.f - s, 1.f)))) << i;
  }
}

// The bf16 precision's feature map (q and k for the linear-attention kernel's bf16 products) is
// the float map on the stored values, rounded once as it is stored: SiLU and the identity. So is
// its backward (dq and dk as the q/k projections' bf16 operands), from an fp32 gradient.
TEST(Vexp, Bf16FeatureMapIsTheFloatMapRoundedOnce) {
  const std::vector<float> xs = array_inputs();
  const int64_t n = int64_t(xs.size());
  std::vector<bf16> x(xs.size()), y(xs.size());
  std::vector<float> xf(xs.size()), yf(xs.size()), dy(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) x[i] = fp32_to_bf16(xs[i]), xf[i] = bf16_to_fp32(x[i]);
  for (size_t i = 0; i < xs.size(); ++i) dy[i] = xs[(i * 7 + 3) % xs.size()];
  for (bool silu : {true, false}) {
    feature_map_forward(x.data(), y.data(), n, silu, 0.125f);
    feature_map_forward(xf.data(), yf.data(), n, silu, 0.125f);
    for (int64_t i = 0; i < n; ++i)  // any NaN is a NaN (its sign follows operand order)
      ASSERT_TRUE(same_bits(bf16_to_fp32(y[i]), bf16_to_fp32(fp32_to_bf16(yf[i])))) << i;
    feature_map_backward(x.data(), dy.data(), y.data(), n, silu, 0.125f);
    feature_map_backward(xf.data(), dy.data(), yf.data(), n, silu, 0.125f);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_TRUE(same_bits(bf16_to_fp32(y[i]), bf16_to_fp32(fp32_to_bf16(yf[i])))) << i;
  }
}

}  // namespace
}  // namespace strata
