// Gradient checks of whole blocks (both mixers, both decays, both feature maps, GQA, sequence
// length not a multiple of the chunk): every parameter tensor and the input, by directional
// finite differences in fp32.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>

#include "model_test_util.h"
#include "models/block.h"

using namespace strata;
using namespace strata::test;

namespace {

struct Case {
  char mixer;
  Decay decay;
  FeatureMap fmap;
  int64_t T, chunk;
  std::string name() const {
    return std::string(1, mixer) + "_" + decay_name(decay) + "_" + feature_map_name(fmap) + "_T" +
           std::to_string(T) + "_c" + std::to_string(chunk);
  }
};

class BlockGrad : public ::testing::TestWithParam<Case> {};

TEST_P(BlockGrad, EveryTensorMatchesFiniteDifferences) {
  const Case c = GetParam();
  ModelConfig cfg = tiny_model(std::string(1, c.mixer), c.decay, c.chunk);
  cfg.feature_map = c.fmap;
  Block block(cfg, 0);
  ParamUnit unit("layers.0");
  prepare_block_unit(block, unit, 5.f);

  const BlockShape s{2, c.T, 0};
  const int64_t N = s.tokens(), D = cfg.dim;
  auto x = random_vector(static_cast<size_t>(N * D), 11);
  const auto R = random_vector(static_cast<size_t>(N * D), 12);
  std::vector<float> y(static_cast<size_t>(N * D)), dx(y.size());

  auto loss = [&] {
    SavedTensors saved;
    block.forward(unit, unit.params().data(), x.data(), y.data(), s, saved);
    double l = 0;
    for (size_t i = 0; i < y.size(); ++i) l += double(y[i]) * R[i];
    return l;
  };
  SavedTensors saved;
  block.forward(unit, unit.params().data(), x.data(), y.data(), s, saved);
  unit.grads().zero();
  block.backward(unit, unit.params().data(), unit.grads().data(), saved, R.data(), dx.data(), s);

  const auto cx = directional_check(x.data(), dx.data(), N * D, 100, loss);
  EXPECT_LT(cx.rel_error(), 2e-3) << "input: analytic " << cx.analytic << " numeric " << cx.numeric;
  uint32_t seed = 200;
  for (const auto& t : unit.tensors()) {
    const auto ct = directional_check(unit.params().data() + t.offset,
                                      unit.grads().data() + t.offset, t.numel, seed++, loss);
    EXPECT_LT(ct.rel_error(), 2e-3)
        << t.name << ": analytic " << ct.analytic << " numeric " << ct.numeric;
  }
}

INSTANTIATE_TEST_SUITE_P(Mixers, BlockGrad,
                         ::testing::Values(Case{'L', Decay::retnet, FeatureMap::silu, 13, 4},
                                           Case{'L', Decay::none, FeatureMap::silu, 13, 4},
                                           Case{'L', Decay::retnet, FeatureMap::identity, 9, 16},
                                           Case{'L', Decay::none, FeatureMap::identity, 8, 3},
                                           Case{'S', Decay::retnet, FeatureMap::silu, 13, 4},
                                           Case{'S', Decay::retnet, FeatureMap::silu, 70, 64}),
                         [](const auto& info) { return info.param.name(); });

TEST(Block, DeclaresMODELmdNamesAndShapes) {
  ModelConfig cfg = tiny_model("LS", Decay::retnet, 4);
  ParamUnit l("l"), s("s");
  Block(cfg, 0).declare(l);
  Block(cfg, 1).declare(s);
  EXPECT_EQ(l.find("self_attn.k_proj.weight").shape, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(s.find("self_attn.k_proj.weight").shape, (std::vector<int64_t>{8, 16}));  // Hkv=2, dh=4
  EXPECT_TRUE(l.contains("model.layers.0.self_attn.out_norm.weight"));
  EXPECT_FALSE(s.contains("out_norm.weight"));
  EXPECT_EQ(s.tensors().front().name, "model.layers.1.input_layernorm.weight");
  EXPECT_EQ(l.find("mlp.down_proj.weight").shape, (std::vector<int64_t>{16, 24}));
}

}  // namespace
