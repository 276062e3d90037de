// The batched GEMMs of the attention kernels (core/batched_gemm.h) against an independent
// reference: a double loop over each batch entry. fp32 must agree to fp32 rounding; bf16 operands
// are rounded first, so the loop over the rounded values must agree to fp32 rounding too (each
// product of two bf16 values is exact in fp32). Every transpose, beta 0 and 1, the FLOP counters
// and the primitive cache.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/batched_gemm.h"
#include "core/bf16.h"
#include "core/dnnl_matmul.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"

namespace strata {
namespace {

struct Case {
  bool ta, tb;
  int64_t batch, M, N, K;
  float beta;
};

std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(n);
  for (float& v : x) v = nd(g);
  return x;
}

// C[b] = op(A[b]) op(B[b]) + beta C[b] in double, dense batch entries.
std::vector<double> reference(const Case& k, const std::vector<float>& a,
                              const std::vector<float>& b, const std::vector<float>& c) {
  std::vector<double> out(c.begin(), c.end());
  for (int64_t e = 0; e < k.batch; ++e)
    for (int64_t i = 0; i < k.M; ++i)
      for (int64_t j = 0; j < k.N; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k.K; ++p) {
          const double x = k.ta ? a[e * k.M * k.K + p * k.M + i] : a[e * k.M * k.K + i * k.K + p];
          const double y = k.tb ? b[e * k.K * k.N + j * k.K + p] : b[e * k.K * k.N + p * k.N + j];
          acc += x * y;
        }
        double& o = out[e * k.M * k.N + i * k.N + j];
        o = acc + k.beta * o;
      }
  return out;
}

// |C - ref| <= 1e-5 * (sum_k |a b| + |beta C|), elementwise: fp32 accumulation error.
void expect_close(const Case& k, const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<float>& a, const std::vector<float>& b,
                  const std::vector<float>& c0) {
  std::vector<float> absa(a.size()), absb(b.size());
  for (size_t i = 0; i < a.size(); ++i) absa[i] = std::abs(a[i]);
  for (size_t i = 0; i < b.size(); ++i) absb[i] = std::abs(b[i]);
  std::vector<float> zero(c0.size(), 0.f);
  const std::vector<double> mag =
      reference({k.ta, k.tb, k.batch, k.M, k.N, k.K, 0.f}, absa, absb, zero);
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::abs(got[i] - want[i]), 1e-5 * (mag[i] + std::abs(k.beta * c0[i])) + 1e-30)
        << "element " << i;
}

const Case kCases[] = {
    {false, false, 7, 16, 16, 8, 0.f}, {false, true, 5, 16, 16, 16, 0.f},
    {true, false, 6, 16, 8, 16, 1.f},  {true, true, 3, 9, 13, 5, 1.f},
    {false, false, 1, 4, 6, 3, 1.f},
};

TEST(BatchedGemm, Fp32MatchesADoubleLoop) {
  for (const Case& k : kCases) {
    SCOPED_TRACE(::testing::Message() << k.ta << k.tb << " " << k.batch << "x" << k.M << "x" << k.N
                                      << "x" << k.K << " beta " << k.beta);
    const auto a = randn(k.batch * k.M * k.K, 1), b = randn(k.batch * k.K * k.N, 2),
               c = randn(k.batch * k.M * k.N, 3);
    std::vector<float> got = c;
    const int64_t flops = gemm_flops();
    batched_gemm(k.ta, k.tb, k.batch, k.M, k.N, k.K, a.data(), b.data(), k.beta, got.data());
    EXPECT_EQ(gemm_flops() - flops, 2 * k.batch * k.M * k.N * k.K);
    expect_close(k, got, reference(k, a, b, c), a, b, c);
  }
}

TEST(BatchedGemm, Bf16MatchesADoubleLoopOverTheRoundedOperands) {
  for (const Case& k : kCases) {
    SCOPED_TRACE(::testing::Message() << k.ta << k.tb << " " << k.batch << "x" << k.M << "x" << k.N
                                      << "x" << k.K << " beta " << k.beta);
    auto a = randn(k.batch * k.M * k.K, 4), b = randn(k.batch * k.K * k.N, 5);
    const auto c = randn(k.batch * k.M * k.N, 6);
    std::vector<bf16> ab(a.size()), bb(b.size());
    to_bf16(a.data(), ab.data(), static_cast<int64_t>(a.size()));
    to_bf16(b.data(), bb.data(), static_cast<int64_t>(b.size()));
    from_bf16(ab.data(), a.data(), static_cast<int64_t>(a.size()));  // the values multiplied
    from_bf16(bb.data(), b.data(), static_cast<int64_t>(b.size()));
    std::vector<float> got = c;
    const int64_t flops = gemm_bf16_flops();
    batched_gemm(k.ta, k.tb, k.batch, k.M, k.N, k.K, ab.data(), bb.data(), k.beta, got.data());
    EXPECT_EQ(gemm_bf16_flops() - flops, 2 * k.batch * k.M * k.N * k.K);
    expect_close(k, got, reference(k, a, b, c), a, b, c);
  }
}

TEST(BatchedGemm, DoubleIsTheLoop) {
  const Case k{true, false, 3, 5, 4, 6, 1.f};
  const auto a = randn(3 * 5 * 6, 7), b = randn(3 * 6 * 4, 8), c = randn(3 * 5 * 4, 9);
  std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end()), got(c.begin(), c.end());
  batched_gemm(k.ta, k.tb, k.batch, k.M, k.N, k.K, ad.data(), bd.data(), 1.0, got.data());
  const std::vector<double> want = reference(k, a, b, c);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
}

TEST(BatchedGemm, EmptyProductLeavesBetaTimesC) {
  std::vector<float> c = {1.f, 2.f, 3.f, 4.f};
  batched_gemm(false, false, 2, 1, 2, 0, static_cast<const float*>(nullptr), nullptr, 1.f,
               c.data());
  EXPECT_EQ(c, (std::vector<float>{1.f, 2.f, 3.f, 4.f}));
  batched_gemm(false, false, 2, 1, 2, 0, static_cast<const float*>(nullptr), nullptr, 0.f,
               c.data());
  EXPECT_EQ(c, (std::vector<float>(4, 0.f)));
}

TEST(BatchedGemm, RepeatedShapesReuseTheirPrimitiveAndGiveTheSameBits) {
  const auto a = randn(4 * 8 * 8, 10), b = randn(4 * 8 * 8, 11);
  std::vector<float> c1(4 * 64), c2(4 * 64);
  batched_gemm(false, true, 4, 8, 8, 8, a.data(), b.data(), 0.f, c1.data());
  const int64_t made = dnnl_matmul_primitives();
  for (int r = 0; r < 3; ++r)
    batched_gemm(false, true, 4, 8, 8, 8, a.data(), b.data(), 0.f, c2.data());
  EXPECT_EQ(dnnl_matmul_primitives(), made);
  EXPECT_EQ(c1, c2);
}

}  // namespace
}  // namespace strata
