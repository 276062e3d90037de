// Finite-difference gradient checks, in double, of the element-wise layers: RMSNorm (with and
// without gain), SwiGLU, the linear-attention feature maps, cross-entropy, embedding.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "fd_check.h"
#include "models/cross_entropy.h"
#include "models/embedding.h"
#include "models/rmsnorm.h"
#include "models/swiglu.h"

using namespace strata;

namespace {

std::vector<double> randn(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

using test::expect_grad;

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

class RmsNormGrad : public ::testing::TestWithParam<bool> {};

TEST_P(RmsNormGrad, MatchesFiniteDifferences) {
  const bool with_gain = GetParam();
  const int64_t N = 3, D = 7;
  auto x = randn(N * D, 1), g = randn(D, 2), R = randn(N * D, 3);
  for (auto& v : g) v += 1.0;
  std::vector<double> y(N * D), inv(N), dx(N * D), dg(D, 0.0);
  auto loss = [&] {
    rmsnorm_forward(x.data(), with_gain ? g.data() : nullptr, y.data(), inv.data(), N, D, 1e-5f);
    return dot(y, R);
  };
  loss();
  rmsnorm_backward(x.data(), with_gain ? g.data() : nullptr, inv.data(), R.data(), dx.data(),
                   with_gain ? dg.data() : nullptr, N, D);
  expect_grad(x, dx, loss);
  if (with_gain) expect_grad(g, dg, loss);
}
INSTANTIATE_TEST_SUITE_P(Gain, RmsNormGrad, ::testing::Values(true, false));

TEST(RmsNorm, NormalisesRows) {
  const int64_t N = 2, D = 4;
  std::vector<double> x = {1, 2, 3, 4, -2, 0, 0, 2}, y(8), inv(2);
  rmsnorm_forward<double>(x.data(), nullptr, y.data(), inv.data(), N, D, 0.f);
  EXPECT_NEAR(inv[0], 1.0 / std::sqrt(30.0 / 4), 1e-12);
  EXPECT_NEAR(y[4], -2.0 / std::sqrt(2.0), 1e-12);
}

// The normalised-rows form the blocks save (rmsnorm_normalise, rmsnorm_gain, and the backward
// from the rows): the same gradients, by finite differences of the composed forward.
TEST_P(RmsNormGrad, TheNormalisedRowsFormMatchesFiniteDifferences) {
  const bool with_gain = GetParam();
  const int64_t N = 3, D = 7;
  auto x = randn(N * D, 11), g = randn(D, 12), R = randn(N * D, 13);
  for (auto& v : g) v += 1.0;
  const double* gp = with_gain ? g.data() : nullptr;
  std::vector<double> xhat(N * D), y(N * D), inv(N), dx(N * D), dg(D, 0.0);
  auto loss = [&] {
    rmsnorm_normalise(x.data(), xhat.data(), inv.data(), N, D, 1e-5f);
    if (with_gain)
      rmsnorm_gain(xhat.data(), g.data(), y.data(), N, D);
    else
      y = xhat;
    return dot(y, R);
  };
  loss();
  rmsnorm_backward_normalised(xhat.data(), gp, inv.data(), R.data(), dx.data(),
                              with_gain ? dg.data() : nullptr, N, D);
  expect_grad(x, dx, loss);
  if (with_gain) expect_grad(g, dg, loss);
}

TEST(SwiGlu, MatchesFiniteDifferences) {
  const int64_t n = 11;
  auto gate = randn(n, 4, 2.0), up = randn(n, 5), R = randn(n, 6);
  std::vector<double> act(n), dgate(n), dup(n);
  auto loss = [&] {
    swiglu_forward(gate.data(), up.data(), act.data(), n);
    return dot(act, R);
  };
  loss();
  swiglu_backward(gate.data(), up.data(), R.data(), dgate.data(), dup.data(), n);
  expect_grad(gate, dgate, loss);
  expect_grad(up, dup, loss);
}

TEST(FeatureMap, SiluAndIdentityMatchFiniteDifferences) {
  for (bool use_silu : {true, false}) {
    const int64_t n = 9;
    auto x = randn(n, 7, 2.0), R = randn(n, 8);
    std::vector<double> y(n), dx(n);
    auto loss = [&] {
      feature_map_forward(x.data(), y.data(), n, use_silu, 0.5);
      return dot(y, R);
    };
    loss();
    feature_map_backward(x.data(), R.data(), dx.data(), n, use_silu, 0.5);
    expect_grad(x, dx, loss);
  }
}

TEST(CrossEntropy, MatchesFiniteDifferencesAndIgnoresMinusOne) {
  const int64_t N = 4, V = 6;
  auto logits = randn(N * V, 9, 2.0);
  std::vector<int32_t> targets = {2, -1, 0, 5};
  std::vector<double> dlogits(N * V);
  const double scale = 1.0 / 3.0;  // three counted targets
  auto loss = [&] {
    return cross_entropy_forward_backward<double>(logits.data(), targets.data(), nullptr, N, V,
                                                  1.0) *
           scale;
  };
  cross_entropy_forward_backward<double>(logits.data(), targets.data(), dlogits.data(), N, V,
                                         scale);
  expect_grad(logits, dlogits, loss);
  for (int64_t j = 0; j < V; ++j) EXPECT_EQ(dlogits[V + j], 0.0);  // the ignored row
}

TEST(CrossEntropy, UniformLogitsGiveLogV) {
  const int64_t N = 2, V = 256;
  std::vector<float> logits(N * V, 0.f);
  std::vector<int32_t> targets = {3, 200};
  const double loss =
      cross_entropy_forward_backward<float>(logits.data(), targets.data(), nullptr, N, V, 1.f);
  EXPECT_NEAR(loss / N, std::log(256.0), 1e-6);
}

TEST(Embedding, BackwardIsAdjointOfForward) {
  const int64_t V = 5, D = 3, N = 6;
  auto E = randn(V * D, 10), R = randn(N * D, 11);
  std::vector<int32_t> tokens = {4, 0, 4, 2, 1, 4};
  std::vector<double> h(N * D), dE(V * D, 0.0);
  auto loss = [&] {
    embedding_forward(E.data(), tokens.data(), h.data(), N, D);
    return dot(h, R);
  };
  loss();
  embedding_backward(tokens.data(), R.data(), dE.data(), N, D);
  expect_grad(E, dE, loss);
}
