// The bf16 matmul widened to fp32 (core/bf16_widened_matmul.h), which every bf16 GEMM runs on a
// CPU without AVX-512, against a double loop over the same bf16 values: the products are exact
// in fp32 and only the fp32 sums round, so |C - ref| <= 1e-5 (sum_k |alpha a b| + |beta c|), the
// bound tests/unit/test_gemm_bf16.cpp holds oneDNN's native bf16 kernels to (K = 37 here: at
// most K ulps of 2^-24 each, 2.2e-6, with room for the AMX kernels' order). A C stored in bf16 adds
// its one rounding, half an ulp: 2^-8 |ref|. Every transpose, batches, leading dimensions wider
// than the operands, alpha and beta, and C's padding left as it was. Where oneDNN has native bf16
// matmuls, the widened result also matches them to the same fp32 sums.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "core/bf16_widened_matmul.h"
#include "core/dnnl_matmul.h"

namespace strata {
namespace {

struct Stored {
  int64_t rows, cols, ld;
  std::vector<bf16> v;  // batch matrices of [rows, ld], the padding filled too
};

Stored random_stored(int64_t batch, bool t, int64_t op_rows, int64_t op_cols, int64_t pad,
                     std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  Stored s{t ? op_cols : op_rows, t ? op_rows : op_cols, 0, {}};
  s.ld = s.cols + pad;
  s.v.resize(static_cast<size_t>(batch * s.rows * s.ld));
  for (bf16& x : s.v) x = fp32_to_bf16(nd(g));
  return s;
}

// op(X)[b](i, j) for a stored operand
double at(const Stored& s, int64_t b, bool t, int64_t i, int64_t j) {
  const int64_t r = t ? j : i, c = t ? i : j;
  return bf16_to_fp32(s.v[static_cast<size_t>(b * s.rows * s.ld + r * s.ld + c)]);
}

struct Layout {
  bool ta, tb, out_bf16;
  int64_t batch;
  float alpha, beta;
};

std::vector<Layout> layouts() {
  std::vector<Layout> out;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t batch : {1, 3}) {
        out.push_back({ta, tb, false, batch, 1.f, 0.f});
        out.push_back({ta, tb, false, batch, -0.5f, 0.75f});
        out.push_back({ta, tb, true, batch, 1.f, 0.f});
      }
  return out;
}

// Runs layout `l` on [M, K] x [K, N] through `run` and checks C against the double loop.
template <class Run>
void check_layout(const Layout& l, Run run) {
  const int64_t M = 13, N = 17, K = 37;
  std::mt19937 g(7 + 3 * l.ta + 5 * l.tb + 11 * l.batch);
  // A batch's matrices are dense one after another in core/dnnl_matmul.h's layout; row padding
  // only without a batch, where leading dimensions wider than the operand are honoured.
  const int64_t pad = l.batch == 1 ? 3 : 0;
  const Stored a = random_stored(l.batch, l.ta, M, K, pad, g);
  const Stored b = random_stored(l.batch, l.tb, K, N, pad, g);
  const int64_t ldc = N + pad;
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> c32(static_cast<size_t>(l.batch * M * ldc));
  for (float& x : c32) x = bf16_to_fp32(fp32_to_bf16(nd(g)));  // exact in either C type
  std::vector<bf16> c16(c32.size());
  for (size_t i = 0; i < c32.size(); ++i) c16[i] = fp32_to_bf16(c32[i]);
  const std::vector<float> c32_before = c32;
  const std::vector<bf16> c16_before = c16;
  MatmulShape s;
  s.in = MatmulInput::bf16, s.batch = l.batch, s.ta = l.ta, s.tb = l.tb;
  s.M = M, s.N = N, s.K = K, s.lda = a.ld, s.ldb = b.ld, s.ldc = ldc;
  s.alpha = l.alpha, s.beta = l.beta, s.out_bf16 = l.out_bf16;
  run(s, a.v.data(), b.v.data(), l.out_bf16 ? static_cast<void*>(c16.data()) : c32.data());
  for (int64_t bi = 0; bi < l.batch; ++bi)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t ci = static_cast<size_t>(bi * M * ldc + i * ldc + j);
        const double got = l.out_bf16 ? bf16_to_fp32(c16[ci]) : c32[ci];
        const double old = l.out_bf16 ? bf16_to_fp32(c16_before[ci]) : c32_before[ci];
        if (j >= N) {  // padding
          EXPECT_EQ(got, old) << "padding at " << bi << "," << i << "," << j;
          continue;
        }
        double sum = 0, mag = 0;
        for (int64_t p = 0; p < K; ++p) {
          const double x = at(a, bi, l.ta, i, p) * at(b, bi, l.tb, p, j);
          sum += x, mag += std::abs(x);
        }
        const double want = l.alpha * sum + l.beta * old;
        double tol = 1e-5 * (std::abs(l.alpha) * mag + std::abs(l.beta * old));
        if (l.out_bf16) tol += std::ldexp(std::abs(want), -8);
        EXPECT_NEAR(got, want, tol)
            << "ta " << l.ta << " tb " << l.tb << " batch " << l.batch << " out_bf16 " << l.out_bf16
            << " at " << bi << "," << i << "," << j;
      }
}

TEST(Bf16WidenedMatmul, MatchesADoubleLoopOnEveryLayout) {
  for (const Layout& l : layouts()) check_layout(l, bf16_widened_matmul);
}

// On any CPU dnnl_matmul's bf16 shapes run natively or widened: either way the same numerics.
TEST(Bf16WidenedMatmul, TheBf16MatmulOfThisCpuMatchesTheSameLoop) {
  for (const Layout& l : layouts()) check_layout(l, dnnl_matmul);
}

TEST(Bf16WidenedMatmul, TheWidenedShapeIsDenseAndFp32) {
  MatmulShape s;
  s.in = MatmulInput::bf16, s.ta = true, s.tb = false, s.M = 5, s.N = 6, s.K = 7;
  s.lda = 9, s.ldb = 11, s.ldc = 8, s.out_bf16 = true;
  const MatmulShape f = bf16_widened_shape(s);
  EXPECT_EQ(f.in, MatmulInput::f32);
  EXPECT_FALSE(f.out_bf16);
  EXPECT_EQ(f.lda, 5);  // Aᵀ stored [K, M]
  EXPECT_EQ(f.ldb, 6);  // B stored [K, N]
  EXPECT_EQ(f.ldc, 6);  // through the dense fp32 scratch
  s.out_bf16 = false;
  EXPECT_EQ(bf16_widened_shape(s).ldc, 8);  // fp32 C written in place
}

}  // namespace
}  // namespace strata
