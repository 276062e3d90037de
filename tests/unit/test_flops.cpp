// The FLOP model of models/flops.h: a hand count for a tiny config, the sequence-parallel
// averages, and the GEMM counter of core/gemm.h measured around a real forward + backward.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/gemm.h"
#include "model_test_util.h"
#include "models/flops.h"
#include "models/model.h"

namespace strata {
namespace {

// V=23, D=16, H=4 (dh=4), Hkv=2, F=24, blocks "LS", linear-attention chunk 4.
ModelConfig hand_config() { return test::tiny_model("LS", Decay::retnet, 4); }

TEST(Flops, WeightGemmsByHand) {
  const ModelConfig cfg = hand_config();
  const int64_t N = 22;  // 2 sequences of 11 tokens
  // Linear block: q, k, v, o are 16x16 (all heads have keys), MLP 3 x 16x24.
  const double linear = 2.0 * N * (16 * 16 + 2 * 16 * 16 + 16 * 16 + 3 * 16 * 24);
  // Softmax block: k and v are 8x16 (Hkv * dh = 2 * 4).
  const double softmax = 2.0 * N * (16 * 16 + 2 * 16 * 8 + 16 * 16 + 3 * 16 * 24);
  for (int64_t block : {0, 1}) {
    const UnitFlops f = block_gemm_flops(cfg, block, N);
    const double want = block == 0 ? linear : softmax;
    EXPECT_DOUBLE_EQ(f.forward, want);
    EXPECT_DOUBLE_EQ(f.backward_input, want);   // dY W
    EXPECT_DOUBLE_EQ(f.backward_weight, want);  // dY^T X
  }
  const UnitFlops head = head_flops(cfg, N);
  EXPECT_DOUBLE_EQ(head.forward, 2.0 * N * 23 * 16);
  EXPECT_DOUBLE_EQ(head.backward_input, 2.0 * N * 23 * 16);
  EXPECT_DOUBLE_EQ(head.backward_weight, 2.0 * N * 23 * 16);  // the fused passes: dW alone
  // Split over the vocabulary, or too large a vocabulary to fuse: the logits again, then dW.
  EXPECT_DOUBLE_EQ(head_flops(cfg, N, true).backward_weight, 2 * 2.0 * N * 23 * 16);
  ModelConfig wide = cfg;
  wide.vocab_size = 1 << 20;
  EXPECT_DOUBLE_EQ(head_flops(wide, N).backward_weight, 2 * head_flops(wide, N).forward);
  EXPECT_EQ(embedding_flops(cfg, N).total(), 0);
}

TEST(Flops, AttentionCoresByHand) {
  const ModelConfig cfg = hand_config();
  const FlopShape shape{22, 11, 0};
  const double dh = 4, seq_heads = 2 * 4;  // 2 sequences x 4 heads
  // Linear: 11 tokens in chunks of 4, the last padded to 4 rows (all multiplied at once); per
  // chunk forward 2(2 n^2 dh + 2 n dh^2), backward 2(5 n^2 dh + 5 n dh^2) with n = 4. Alone on
  // its sequence, LASP-2 adds nothing (no state is shared).
  double fwd = 0, bwd = 0;
  for (double n : {4.0, 4.0, 4.0}) {
    fwd += 4 * n * n * dh + 4 * n * dh * dh;
    bwd += 10 * n * n * dh + 10 * n * dh * dh;
  }
  const UnitFlops linear = attention_core_flops(cfg, 0, shape);
  EXPECT_DOUBLE_EQ(linear.forward, fwd * seq_heads);
  EXPECT_DOUBLE_EQ(linear.backward_input, bwd * seq_heads);
  EXPECT_EQ(linear.backward_weight, 0);
  // Softmax: 11 queries fit one 64-row tile, which scores all 11 keys: 121 pairs; forward
  // Q K^T and P V (2 * 2 * pairs * dh), backward five such products.
  const UnitFlops softmax = attention_core_flops(cfg, 1, shape);
  EXPECT_DOUBLE_EQ(softmax.forward, 2 * 2 * 121 * dh * seq_heads);
  EXPECT_DOUBLE_EQ(softmax.backward_input, 2 * 5 * 121 * dh * seq_heads);
  EXPECT_EQ(softmax.backward_weight, 0);
  // The unit list: embedding, the two blocks, the head; backward = input + weight.
  const std::vector<UnitFlops> units = unit_flops(cfg, shape);
  ASSERT_EQ(units.size(), 4u);
  EXPECT_DOUBLE_EQ(units[2].forward, block_gemm_flops(cfg, 1, 22).forward + softmax.forward);
  EXPECT_DOUBLE_EQ(units[1].backward(), units[1].backward_input + units[1].backward_weight);
}

TEST(Flops, LongSoftmaxSequencesAreCountedByTile) {
  const ModelConfig cfg = hand_config();
  // 70 queries: a tile of 64 (64 x 64 pairs) and one of 6 that sees all 70 keys.
  const UnitFlops f = attention_core_flops(cfg, 1, {70, 70, 0});
  EXPECT_DOUBLE_EQ(f.forward, 2 * 2 * (64.0 * 64 + 6 * 70) * 4 * 4);
}

TEST(Flops, SequenceParallelChunksAreAveragedOverRanks) {
  const ModelConfig cfg = hand_config();
  // 4 sp ranks of 11 tokens: rank r's queries sit at 11 r and see 11 r more keys each, so the
  // average rank scores 121 + 11 * 16.5 pairs per head.
  const UnitFlops softmax = attention_core_flops(cfg, 1, {22, 11, 44});
  EXPECT_DOUBLE_EQ(softmax.forward, 2 * 2 * (121 + 11 * 16.5) * 4 * 8);
  // Linear: every rank forms its state (forward) and its prefix gradient (backward); 3 of 4
  // ranks add the earlier ranks' state to their output (forward) and query gradient, and 3 of
  // 4 the later ranks' gradient to their keys and values (backward): 1.75 and 4.25 2 T dh^2
  // products more than one rank alone.
  const UnitFlops alone = attention_core_flops(cfg, 0, {22, 11, 0});
  const UnitFlops chunk = attention_core_flops(cfg, 0, {22, 11, 44});
  const double state = 2 * 11 * 4 * 4 * 8;  // 2 T dh^2 over 2 sequences x 4 heads
  EXPECT_DOUBLE_EQ(chunk.forward - alone.forward, 1.75 * state);
  EXPECT_DOUBLE_EQ(chunk.backward_input - alone.backward_input, (1 + 0.75 * 3) * state);
}

// What core/gemm.h counts around one real micro-batch: the weight GEMMs must match exactly, the
// attention cores (counted by the model as the kernels tile them) within a small tolerance.
void expect_matches_gemm_counter(const ModelConfig& cfg, int64_t B, int64_t T) {
  Model model(cfg);
  model.init(7);
  model.zero_grads();
  std::mt19937 g(3);
  std::vector<int32_t> tok(static_cast<size_t>(B * T)), tgt(tok.size());
  for (auto& t : tok) t = static_cast<int32_t>(g() % cfg.vocab_size);
  for (auto& t : tgt) t = static_cast<int32_t>(g() % cfg.vocab_size);
  ActivationStore store(cfg.n_layers, ActivationPolicy::keep);
  const BlockShape s{B, T, 0};
  const int64_t before = gemm_flops();
  model.forward_backward(tok.data(), tgt.data(), s, 1.f / static_cast<float>(B * T), store, 0);
  const double measured = static_cast<double>(gemm_flops() - before);

  const FlopShape shape{B * T, T, 0};
  double modelled = 0, cores = 0;
  for (const UnitFlops& u : unit_flops(cfg, shape)) modelled += u.total();
  for (int64_t i = 0; i < cfg.n_layers; ++i) cores += attention_core_flops(cfg, i, shape).total();
  EXPECT_NEAR(measured, modelled, 0.02 * cores) << "B=" << B << " T=" << T;
}

TEST(Flops, MatchesTheGemmCounterOfARealStep) {
  expect_matches_gemm_counter(hand_config(), 2, 11);
  expect_matches_gemm_counter(test::tiny_model("LLS", Decay::none, 16), 1, 70);
}

}  // namespace
}  // namespace strata
