// The normalised-rows form of RMSNorm in float (models/rmsnorm.h), as the blocks run it: the
// forward is rmsnorm_forward's bits; the backward from fp32 rows agrees with rmsnorm_backward
// from the input within fp32 rounding; from bf16 rows it is exactly the fp32 backward of the
// rows' values, and within the bf16 tolerance of the fp32 backward. (Its gradients are checked
// by finite differences in double in test_layers.cpp.)
//
// Tolerance: the bf16 rows carry a relative error <= 2^-9 each; the backward is linear in them
// with an O(1) gain, so the norm-wise error of dx and dg is a small multiple of 2^-9 = 0.002.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "models/rmsnorm.h"
#include "op_test_util.h"

using namespace strata;
using strata::test::rel_norm;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float mean = 0.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(mean, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Rows long enough for the vector lanes and a scalar tail (16 * 4 + 5).
constexpr int64_t kN = 9, kD = 69;

struct Grads {
  std::vector<float> dx = std::vector<float>(kN * kD), dg = std::vector<float>(kD, 0.f);
};

}  // namespace

TEST(RmsNormRows, TheForwardIsRmsnormForwardBitForBit) {
  const auto x = randn(kN * kD, 1), g = randn(kD, 2, 1.f);
  std::vector<float> y(kN * kD), inv(kN), xhat(kN * kD), y2(kN * kD), inv2(kN), plain(kN * kD);
  rmsnorm_forward(x.data(), g.data(), y.data(), inv.data(), kN, kD, 1e-5f);
  rmsnorm_normalise(x.data(), xhat.data(), inv2.data(), kN, kD, 1e-5f);
  rmsnorm_gain(xhat.data(), g.data(), y2.data(), kN, kD);
  EXPECT_EQ(y2, y);
  EXPECT_EQ(inv2, inv);
  rmsnorm_forward<float>(x.data(), nullptr, plain.data(), inv.data(), kN, kD, 1e-5f);
  EXPECT_EQ(xhat, plain);
}

// The one-pass forward (rows and operand at once) is the two passes bit for bit, in fp32 and
// with bf16 rows and operand (the gain reads the rows as rounded).
template <class S>
void expect_one_pass_is_two(const std::vector<float>& x, const std::vector<float>& g) {
  std::vector<S> xhat(kN * kD), y(kN * kD), xhat1(kN * kD), y1(kN * kD);
  std::vector<float> inv(kN), inv1(kN);
  rmsnorm_normalise(x.data(), xhat.data(), inv.data(), kN, kD, 1e-5f);
  rmsnorm_gain(xhat.data(), g.data(), y.data(), kN, kD);
  rmsnorm_normalise_gain(x.data(), g.data(), xhat1.data(), y1.data(), inv1.data(), kN, kD, 1e-5f);
  EXPECT_EQ(inv1, inv);
  for (int64_t i = 0; i < kN * kD; ++i) {
    ASSERT_EQ(std::memcmp(&xhat1[i], &xhat[i], sizeof(S)), 0) << i;
    ASSERT_EQ(std::memcmp(&y1[i], &y[i], sizeof(S)), 0) << i;
  }
}

TEST(RmsNormRows, TheOnePassForwardIsTheTwoPassesBitForBit) {
  const auto x = randn(kN * kD, 12), g = randn(kD, 13, 1.f);
  expect_one_pass_is_two<float>(x, g);
  expect_one_pass_is_two<bf16>(x, g);
}

TEST(RmsNormRows, TheBackwardFromTheRowsIsTheBackwardFromTheInput) {
  const auto x = randn(kN * kD, 3), g = randn(kD, 4, 1.f), dy = randn(kN * kD, 5);
  std::vector<float> y(kN * kD), inv(kN), xhat(kN * kD);
  rmsnorm_forward(x.data(), g.data(), y.data(), inv.data(), kN, kD, 1e-5f);
  rmsnorm_normalise(x.data(), xhat.data(), inv.data(), kN, kD, 1e-5f);
  Grads from_x, from_rows;
  rmsnorm_backward(x.data(), g.data(), inv.data(), dy.data(), from_x.dx.data(), from_x.dg.data(),
                   kN, kD);
  rmsnorm_backward_normalised(xhat.data(), g.data(), inv.data(), dy.data(), from_rows.dx.data(),
                              from_rows.dg.data(), kN, kD);
  EXPECT_LE(rel_norm(from_rows.dx, from_x.dx), 1e-6);
  EXPECT_LE(rel_norm(from_rows.dg, from_x.dg), 1e-6);
}

TEST(RmsNormRows, Bf16RowsAreTheFp32BackwardOfTheirValues) {
  const auto x = randn(kN * kD, 6), g = randn(kD, 7, 1.f), dy = randn(kN * kD, 8);
  for (const float* gain : {g.data(), static_cast<const float*>(nullptr)}) {
    std::vector<float> inv(kN), inv16(kN), xhat(kN * kD), values(kN * kD);
    std::vector<bf16> rows(kN * kD), y16(kN * kD);
    rmsnorm_normalise(x.data(), xhat.data(), inv.data(), kN, kD, 1e-5f);
    rmsnorm_normalise(x.data(), rows.data(), inv16.data(), kN, kD, 1e-5f);
    EXPECT_EQ(inv16, inv);  // the statistics stay fp32
    for (int64_t i = 0; i < kN * kD; ++i) {
      ASSERT_EQ(rows[i], fp32_to_bf16(xhat[i])) << i;  // one rounding of the fp32 row
      values[i] = bf16_to_fp32(rows[i]);
    }
    if (gain) {  // the operand: the rows' values times g, rounded once
      rmsnorm_gain(rows.data(), gain, y16.data(), kN, kD);
      for (int64_t i = 0; i < kN * kD; ++i)
        ASSERT_EQ(y16[i], fp32_to_bf16(values[i] * gain[i % kD])) << i;
    }
    Grads half, of_values, full;
    rmsnorm_backward_normalised(rows.data(), gain, inv.data(), dy.data(), half.dx.data(),
                                gain ? half.dg.data() : nullptr, kN, kD);
    rmsnorm_backward_normalised(values.data(), gain, inv.data(), dy.data(), of_values.dx.data(),
                                gain ? of_values.dg.data() : nullptr, kN, kD);
    rmsnorm_backward_normalised(xhat.data(), gain, inv.data(), dy.data(), full.dx.data(),
                                gain ? full.dg.data() : nullptr, kN, kD);
    EXPECT_EQ(half.dx, of_values.dx);
    EXPECT_EQ(half.dg, of_values.dg);
    EXPECT_LE(rel_norm(half.dx, full.dx), 8e-3);
    EXPECT_GT(rel_norm(half.dx, full.dx), 0);  // the rows were rounded
    if (gain) {
      EXPECT_LE(rel_norm(half.dg, full.dg), 8e-3);
    }
  }
}

// The backward's row dot and dg's blocks of rows are summed in an order the code fixes: one
// thread and two give the same bits (rows past a block of 32, and a gain, so dg's blocks count).
TEST(RmsNormRows, TheBackwardDoesNotDependOnTheThreadCount) {
  const int64_t N = 75;
  const auto x = randn(N * kD, 9), g = randn(kD, 10, 1.f), dy = randn(N * kD, 11);
  std::vector<float> inv(N);
  std::vector<bf16> rows(N * kD);
  rmsnorm_normalise(x.data(), rows.data(), inv.data(), N, kD, 1e-5f);
  const int saved = omp_get_max_threads();
  std::vector<std::vector<float>> dx(2, std::vector<float>(N * kD)), dg(2, std::vector<float>(kD));
  for (int t = 0; t < 2; ++t) {
    omp_set_num_threads(t + 1);
    rmsnorm_backward_normalised(rows.data(), g.data(), inv.data(), dy.data(), dx[t].data(),
                                dg[t].data(), N, kD);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(dx[0], dx[1]);
  EXPECT_EQ(dg[0], dg[1]);
}

// The blocks add a residual branch's gradient in the norm backward's own pass: dx must be the
// backward's dx plus the residual, rounded as that separate add rounds (not fused with the
// backward's last multiply into one FMA), on the vector lanes and the tail, fp32 and bf16 rows.
TEST(RmsNormRows, TheResidualJoinsAsASeparateAddWould) {
  const auto x = randn(kN * kD, 21), g = randn(kD, 22, 1.f), dy = randn(kN * kD, 23),
             res = randn(kN * kD, 24);
  std::vector<float> inv(kN), xhat(kN * kD);
  rmsnorm_normalise(x.data(), xhat.data(), inv.data(), kN, kD, 1e-5f);
  std::vector<bf16> rows(kN * kD);
  to_bf16(xhat.data(), rows.data(), kN * kD);
  for (int stored = 0; stored < 2; ++stored) {
    Grads apart, joined;
    auto backward = [&](Grads& out, const float* residual) {
      if (stored)
        rmsnorm_backward_normalised(rows.data(), g.data(), inv.data(), dy.data(), out.dx.data(),
                                    out.dg.data(), kN, kD, residual);
      else
        rmsnorm_backward_normalised(xhat.data(), g.data(), inv.data(), dy.data(), out.dx.data(),
                                    out.dg.data(), kN, kD, residual);
    };
    backward(apart, nullptr);
    for (int64_t i = 0; i < kN * kD; ++i) apart.dx[i] += res[i];
    backward(joined, res.data());
    EXPECT_EQ(joined.dx, apart.dx) << (stored ? "bf16 rows" : "fp32 rows");
    EXPECT_EQ(joined.dg, apart.dg);
  }
  // double (the finite-difference references' type) adds in double
  const std::vector<double> xd(xhat.begin(), xhat.end()), gd(g.begin(), g.end()),
      invd(inv.begin(), inv.end()), dyd(dy.begin(), dy.end());
  std::vector<double> rd(res.size()), apart(kN * kD), joined(kN * kD), dg(kD);
  for (size_t i = 0; i < res.size(); ++i) rd[i] = res[i] * (1.0 + 1e-12);  // not a float
  rmsnorm_backward_normalised(xd.data(), gd.data(), invd.data(), dyd.data(), apart.data(),
                              dg.data(), kN, kD);
  for (int64_t i = 0; i < kN * kD; ++i) apart[i] += rd[i];
  rmsnorm_backward_normalised(xd.data(), gd.data(), invd.data(), dyd.data(), joined.data(),
                              dg.data(), kN, kD, rd.data());
  EXPECT_EQ(joined, apart);
}
