// Whole-model checks: gradients of every unit by directional finite differences (untied and
// tied embeddings), recompute == keep bit for bit, causality across chunk boundaries,
// initialisation keyed by (seed, name), determinism.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/rng.h"
#include "model_test_util.h"
#include "models/model.h"

using namespace strata;
using namespace strata::test;

namespace {

std::vector<int32_t> random_tokens(size_t n, int64_t V, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(g() % V);
  return t;
}

double loss_of(Model& m, const std::vector<int32_t>& tok, const std::vector<int32_t>& tgt,
               const BlockShape& s) {
  int64_t counted = 0;
  return m.forward_loss(tok.data(), tgt.data(), s, &counted);
}

class ModelGrad : public ::testing::TestWithParam<bool> {};

TEST_P(ModelGrad, EveryUnitMatchesFiniteDifferences) {
  ModelConfig cfg = tiny_model("LLS", Decay::retnet, 4);
  cfg.tie_embeddings = GetParam();
  Model model(cfg);
  model.init(3);
  for (auto& u : model.units())
    for (int64_t i = 0; i < u.numel(); ++i) u.params()[i] *= u.params()[i] == 1.f ? 1.f : 4.f;
  const BlockShape s{2, 11, 0};
  auto tok = random_tokens(22, cfg.vocab_size, 1), tgt = random_tokens(22, cfg.vocab_size, 2);
  tgt[3] = -1;  // an ignored target
  const float scale = 1.f / 21.f;
  ActivationStore store(cfg.n_layers, ActivationPolicy::keep);
  model.zero_grads();
  model.forward_backward(tok.data(), tgt.data(), s, scale, store, 0);
  auto f = [&] { return loss_of(model, tok, tgt, s) * scale; };
  uint32_t seed = 10;
  for (auto& u : model.units()) {
    const auto c = directional_check(u.params().data(), u.grads().data(), u.numel(), seed++, f);
    EXPECT_LT(c.rel_error(), 2e-3)
        << u.name() << ": analytic " << c.analytic << " numeric " << c.numeric;
  }
}
INSTANTIATE_TEST_SUITE_P(Tied, ModelGrad, ::testing::Values(false, true));

TEST(Model, RecomputeGivesBitIdenticalGradients) {
  ModelConfig cfg = tiny_model("LSL", Decay::retnet, 4);
  const BlockShape s{2, 10, 0};
  auto tok = random_tokens(20, cfg.vocab_size, 5), tgt = random_tokens(20, cfg.vocab_size, 6);
  std::vector<std::vector<float>> grads[2];
  double losses[2];
  for (int p = 0; p < 2; ++p) {
    Model model(cfg);
    model.init(9);
    ActivationStore store(cfg.n_layers, p ? ActivationPolicy::recompute : ActivationPolicy::keep);
    losses[p] = model.forward_backward(tok.data(), tgt.data(), s, 0.05f, store, 0);
    for (auto& u : model.units())
      grads[p].emplace_back(u.grads().data(), u.grads().data() + u.numel());
    if (p) {
      EXPECT_EQ(store.recomputed_blocks(), cfg.n_layers);
    }
  }
  EXPECT_EQ(losses[0], losses[1]);
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t u = 0; u < grads[0].size(); ++u)
    EXPECT_EQ(0, std::memcmp(grads[0][u].data(), grads[1][u].data(), grads[0][u].size() * 4)) << u;
}

// Perturbing token p never changes the loss at positions before p, and does change it at p.
TEST(Model, CausalAcrossChunkBoundaries) {
  ModelConfig cfg = tiny_model("LSL", Decay::retnet, 4);
  Model model(cfg);
  model.init(4);
  const int64_t T = 13;
  const BlockShape s{1, T, 0};
  const auto tok = random_tokens(T, cfg.vocab_size, 7);
  const auto all_tgt = random_tokens(T, cfg.vocab_size, 8);
  for (int64_t p : {4, 7, 5, 12}) {  // chunk start, chunk end, mid-chunk, last token
    auto perturbed = tok;
    perturbed[p] = (perturbed[p] + 1) % static_cast<int32_t>(cfg.vocab_size);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int32_t> tgt(T, -1);
      tgt[t] = all_tgt[t];  // the loss at position t alone
      const double a = loss_of(model, tok, tgt, s), b = loss_of(model, perturbed, tgt, s);
      if (t < p) {
        EXPECT_EQ(a, b) << "perturbing token " << p << " changed position " << t;
      }
      if (t == p) {
        EXPECT_NE(a, b) << "perturbing token " << p << " left its own output unchanged";
      }
    }
  }
}

TEST(Model, InitIsKeyedBySeedAndName) {
  // Same depth (init scales depend on it), different mixer of layer 1.
  ModelConfig a = tiny_model("LS", Decay::retnet, 4), b = tiny_model("LL", Decay::retnet, 4);
  Model ma(a), mb(b);
  ma.init(42);
  mb.init(42);
  // Layer 0 has the same names and shapes in both models: the same numbers.
  const auto& ua = ma.units()[1];
  const auto& ub = mb.units()[1];
  ASSERT_EQ(ua.numel(), ub.numel());
  EXPECT_EQ(0, std::memcmp(ua.params().data(), ub.params().data(), ua.numel() * 4));
  // And a tensor can be drawn piecewise (as a shard would) with the same numbers.
  const auto& t = ua.find("q_proj.weight");
  std::vector<float> piece(5);
  fill_normal(piece.data(), 5, 42, t.name, t.init_std, 7);
  EXPECT_EQ(0, std::memcmp(piece.data(), ua.params().data() + t.offset + 7, 20));
  // o_proj uses the 0.02/sqrt(2L) scale.
  const auto& o = ua.find("o_proj.weight");
  EXPECT_FLOAT_EQ(o.init_std, 0.02f / std::sqrt(4.f));
  EXPECT_EQ(ua.params()[ua.find("input_layernorm.weight").offset], 1.f);
}

TEST(Model, SameSeedSameLossDifferentSeedDifferentLoss) {
  ModelConfig cfg = tiny_model("LLS", Decay::retnet, 4);
  const BlockShape s{2, 9, 0};
  auto tok = random_tokens(18, cfg.vocab_size, 1), tgt = random_tokens(18, cfg.vocab_size, 2);
  Model m1(cfg), m2(cfg), m3(cfg);
  m1.init(1);
  m2.init(1);
  m3.init(2);
  EXPECT_EQ(loss_of(m1, tok, tgt, s), loss_of(m2, tok, tgt, s));
  EXPECT_NE(loss_of(m1, tok, tgt, s), loss_of(m3, tok, tgt, s));
}

TEST(Model, ParameterCountMatchesConfig) {
  for (bool tied : {false, true}) {
    ModelConfig cfg = tiny_model("LLLS", Decay::retnet, 4);
    cfg.tie_embeddings = tied;
    EXPECT_EQ(Model(cfg).num_parameters(), cfg.num_parameters());
  }
}

}  // namespace
