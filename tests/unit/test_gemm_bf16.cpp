// The bf16 GEMM (core/gemm_bf16.h) against an independent reference: a double-precision loop over
// the same bf16-rounded operands, which the fp32 accumulation must match to fp32 rounding (each
// product of two bf16 values is exact in fp32), and the fp32 GEMM on the unrounded operands,
// which it must match to bf16's rounding of the inputs: |C - C32| <= 2^-7 sum_k |a_ik b_kj|
// (each operand carries a relative error of at most 2^-9, so a product at most ~2^-8). Every
// transpose, alpha and beta, leading dimensions wider than the operands, a reduction run in
// pieces, the primitive cache and run-to-run bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"

namespace strata {
namespace {

struct Case {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
};

struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, c;  // fp32, a and b already rounded to bf16 values where asked
  std::vector<bf16> ab, bb;
};

Operands operands(const Case& k, bool round, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Operands o;
  const int64_t a_rows = k.ta ? k.K : k.M, a_cols = k.ta ? k.M : k.K;
  const int64_t b_rows = k.tb ? k.N : k.K, b_cols = k.tb ? k.K : k.N;
  o.lda = a_cols + 3;  // wider rows: the leading dimensions are honoured
  o.ldb = b_cols + 5;
  o.ldc = k.N + 2;
  o.a.resize(static_cast<size_t>(a_rows * o.lda));
  o.b.resize(static_cast<size_t>(b_rows * o.ldb));
  o.c.resize(static_cast<size_t>(k.M * o.ldc));
  for (auto* v : {&o.a, &o.b, &o.c})
    for (float& x : *v) x = nd(g);
  o.ab.resize(o.a.size());
  o.bb.resize(o.b.size());
  to_bf16(o.a.data(), o.ab.data(), static_cast<int64_t>(o.a.size()));
  to_bf16(o.b.data(), o.bb.data(), static_cast<int64_t>(o.b.size()));
  if (round) {
    from_bf16(o.ab.data(), o.a.data(), static_cast<int64_t>(o.a.size()));
    from_bf16(o.bb.data(), o.b.data(), static_cast<int64_t>(o.b.size()));
  }
  return o;
}

// C = alpha op(A) op(B) + beta C in double; `bound` = |alpha| sum_k |a b| per element.
void reference(const Case& k, const Operands& o, std::vector<double>& c,
               std::vector<double>& bound) {
  c.assign(static_cast<size_t>(k.M * k.N), 0.0);
  bound.assign(c.size(), 0.0);
  for (int64_t i = 0; i < k.M; ++i)
    for (int64_t j = 0; j < k.N; ++j) {
      double s = 0, b = 0;
      for (int64_t p = 0; p < k.K; ++p) {
        const double x = k.ta ? o.a[p * o.lda + i] : o.a[i * o.lda + p];
        const double y = k.tb ? o.b[j * o.ldb + p] : o.b[p * o.ldb + j];
        s += x * y;
        b += std::abs(x * y);
      }
      c[i * k.N + j] = k.alpha * s + k.beta * o.c[i * o.ldc + j];
      bound[i * k.N + j] = std::abs(k.alpha) * b + std::abs(k.beta * o.c[i * o.ldc + j]);
    }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      out.push_back({ta, tb, 37, 29, 53, 1.f, 0.f});
      out.push_back({ta, tb, 64, 48, 160, 0.5f, 1.f});  // alpha and accumulate (beta 1)
      out.push_back({ta, tb, 5, 70, 3, 1.f, 0.25f});
      // a reduction longer than the transposed product's piece (core/gemm_bf16.cpp): three
      // pieces, the last partial, alpha on each and beta once
      out.push_back({ta, tb, 21, 18, 1300, 0.75f, 0.5f});
    }
  return out;
}

TEST(GemmBf16, MatchesADoubleLoopOnTheRoundedOperands) {
  for (const Case& k : cases()) {
    SCOPED_TRACE(::testing::Message() << k.ta << k.tb << " " << k.M << "x" << k.N << "x" << k.K
                                      << " alpha " << k.alpha << " beta " << k.beta);
    Operands o = operands(k, true, 1);
    std::vector<double> ref, bound;
    reference(k, o, ref, bound);
    gemm_bf16(k.ta, k.tb, k.M, k.N, k.K, k.alpha, o.ab.data(), o.lda, o.bb.data(), o.ldb, k.beta,
              o.c.data(), o.ldc);
    int64_t bad = 0;
    for (int64_t i = 0; i < k.M; ++i)
      for (int64_t j = 0; j < k.N; ++j)  // fp32 accumulation of exact products
        bad +=
            !(std::abs(o.c[i * o.ldc + j] - ref[i * k.N + j]) <= 1e-5 * bound[i * k.N + j] + 1e-30);
    EXPECT_EQ(bad, 0);
    for (int64_t i = 0; i < k.M; ++i)  // padding columns of C untouched
      for (int64_t j = k.N; j < o.ldc; ++j)
        EXPECT_EQ(o.c[i * o.ldc + j], operands(k, true, 1).c[i * o.ldc + j]);
  }
}

TEST(GemmBf16, MatchesTheFp32GemmToBf16Rounding) {
  for (const Case& k : cases()) {
    Operands o = operands(k, false, 2);
    std::vector<float> c32 = o.c;
    sgemm(k.ta, k.tb, k.M, k.N, k.K, k.alpha, o.a.data(), o.lda, o.b.data(), o.ldb, k.beta,
          c32.data(), o.ldc);
    std::vector<double> ref, bound;
    reference(k, o, ref, bound);
    gemm_bf16(k.ta, k.tb, k.M, k.N, k.K, k.alpha, o.ab.data(), o.lda, o.bb.data(), o.ldb, k.beta,
              o.c.data(), o.ldc);
    int64_t bad = 0;
    for (int64_t i = 0; i < k.M; ++i)
      for (int64_t j = 0; j < k.N; ++j)
        bad += !(std::abs(o.c[i * o.ldc + j] - c32[i * o.ldc + j]) <=
                 std::ldexp(1.0, -7) * bound[i * k.N + j]);
    EXPECT_EQ(bad, 0) << k.M << "x" << k.N << "x" << k.K;
  }
}

TEST(GemmBf16, PrimitivesAreCreatedOncePerShapeAndRunsRepeatBitForBit) {
  const Case k{false, true, 96, 80, 64, 1.f, 0.f};
  Operands o = operands(k, false, 3);
  std::vector<float> first = o.c;
  gemm_bf16(k.ta, k.tb, k.M, k.N, k.K, 1.f, o.ab.data(), o.lda, o.bb.data(), o.ldb, 0.f,
            first.data(), o.ldc);
  const int64_t made = gemm_bf16_primitives();
  for (int r = 0; r < 5; ++r) {
    std::vector<float> again = o.c;
    gemm_bf16(k.ta, k.tb, k.M, k.N, k.K, 1.f, o.ab.data(), o.lda, o.bb.data(), o.ldb, 0.f,
              again.data(), o.ldc);
    EXPECT_EQ(0, std::memcmp(again.data(), first.data(), first.size() * sizeof(float)));
  }
  EXPECT_EQ(gemm_bf16_primitives(), made);
  const int64_t flops = gemm_bf16_flops();
  gemm_bf16(k.ta, k.tb, k.M, k.N, k.K, 1.f, o.ab.data(), o.lda, o.bb.data(), o.ldb, 0.f,
            first.data(), o.ldc);
  EXPECT_EQ(gemm_bf16_flops() - flops, 2 * k.M * k.N * k.K);
}

TEST(GemmBf16, RunsOnTheCpusBf16UnitsWhereItHasThem) {
  const std::string impl = gemm_bf16_impl(false, true, 256, 256, 256);
  EXPECT_FALSE(impl.empty());
  if (cpu_has_native_bf16()) {
    EXPECT_NE(impl.find("avx512_core"), std::string::npos) << impl;
    EXPECT_EQ(impl.find("ref"), std::string::npos) << impl;
  }
}

TEST(Bf16, ConversionRoundsToNearestEvenAndIsExactBack) {
  std::vector<float> x = {1.f, -2.5f, 3.1415926f, 1e-40f, 65504.f, -0.f};
  std::vector<bf16> h(x.size());
  std::vector<float> back(x.size());
  to_bf16(x.data(), h.data(), static_cast<int64_t>(x.size()));
  from_bf16(h.data(), back.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(h[i], fp32_to_bf16(x[i]));
    // Half an ulp: 2^-8 relative for normal values, half of 2^-133 among the subnormals.
    EXPECT_LE(std::abs(back[i] - x[i]), std::ldexp(std::abs(x[i]), -8) + std::ldexp(1.f, -134))
        << x[i];
    EXPECT_EQ(fp32_to_bf16(back[i]), h[i]);  // bf16 values convert back exactly
  }
}

// The array conversions run 16 lanes at a time (core/vexp.h) and the tail one by one: every bit
// pattern class (ties to even both ways, carries into the exponent, infinities, NaNs, subnormals)
// must convert exactly as the scalar fp32_to_bf16 does, at every position of a ragged array.
TEST(Bf16, VectorConversionIsTheScalarOneBitForBit) {
  std::vector<uint32_t> bits = {0x3F808000u, 0x3F818000u, 0x3F80FFFFu, 0x7F7FFFFFu, 0x7F800000u,
                                0xFF800000u, 0x7FC00001u, 0x7F800001u, 0xFFFFFFFFu, 0x00000001u,
                                0x807FFFFFu, 0x00008000u, 0x80000000u, 0x3F7F8000u};
  std::mt19937 g(5);
  while (bits.size() < 16 * 37 + 5) bits.push_back(g());
  std::vector<float> x(bits.size());
  for (size_t i = 0; i < x.size(); ++i) std::memcpy(&x[i], &bits[i], 4);
  std::vector<bf16> h(x.size());
  to_bf16(x.data(), h.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(h[i], fp32_to_bf16(x[i])) << std::hex << bits[i];
  std::vector<float> back(x.size());
  from_bf16(h.data(), back.data(), static_cast<int64_t>(h.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = bf16_to_fp32(h[i]);
    ASSERT_EQ(std::memcmp(&back[i], &want, 4), 0) << i;
  }
}

// The vector conversion is one AVX512-BF16 instruction, which flushes subnormal inputs to zero:
// a subnormal anywhere among 16 normal values must still round as the scalar conversion does
// (up to the smallest normal, down to zero, or to a bf16 subnormal), with its neighbours intact.
TEST(Bf16, VectorConversionKeepsSubnormalsInAnyLane) {
  const std::vector<uint32_t> subnormals = {0x00000001u, 0x00007FFFu, 0x00008000u, 0x00018000u,
                                            0x00400000u, 0x007F7FFFu, 0x007F8000u, 0x007FFFFFu,
                                            0x807FFFFFu, 0x80400001u, 0x80008001u};
  std::vector<float> x(16);
  std::vector<bf16> h(16);
  for (uint32_t sub : subnormals)
    for (int lane = 0; lane < 16; ++lane) {
      for (int j = 0; j < 16; ++j) {
        const uint32_t b = j == lane ? sub : 0x3F808000u + 0x10000u * static_cast<uint32_t>(j);
        std::memcpy(&x[j], &b, 4);
      }
      to_bf16(x.data(), h.data(), 16);
      for (int j = 0; j < 16; ++j)
        ASSERT_EQ(h[j], fp32_to_bf16(x[j])) << std::hex << sub << " in lane " << lane;
    }
}

}  // namespace
}  // namespace strata
