// The bf16 precision under every parallel axis (-np 2 and 4): ZeRO 1 and 3 over dp, LASP-2 over
// sp, the pipeline under 1F1B and ZB-H1, vocabulary parallelism, each against one process in
// bf16 over 20 steps.
//
// Tolerance (losses 5e-3 relative, parameters 1e-2, against the fp32 tests' 2e-5 and 2e-4): a
// layout sums the same fp32 terms in another order (dp's gradient reduction, sp's prefix states,
// the pipeline's and the vocabulary's all-reduces), which in fp32 leaves ~1e-6 differences. In
// bf16 each such difference reaches the next GEMM through a cast: where it straddles a rounding
// boundary the operand moves by a whole bf16 ulp (2^-8 relative) instead of ~2^-23, and this
// tiny model (dim 32, 20 steps at lr 2e-3) amplifies it step after step. The vocabulary-parallel
// head adds its own: its softmax weights exp(l - m) are cast to bf16 for the G GEMM relative to
// each shard's running max, so every shard rounds them differently from one process holding the
// whole vocabulary, by up to 2^-9 per weight, at every step. Measured: up to 1.3e-3 in the loss
// (sp at 4 ranks, the vocabulary head at 2) by step 20. What these bounds still catch: a stale
// bf16 weight copy, a missed cast or a wrong operand moves the loss by 1e-2 or more in a few
// steps (the per-op tests, tests/unit/test_block_bf16.cpp, pin each GEMM to 2e-2).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pipeline_fixture.h"

namespace strata {
namespace {

constexpr int kSteps = test::kPipelineSteps;
const std::string kBf16 = "train.precision=bf16";

struct Layout {
  const char* name;
  std::vector<std::string> sets;  // "N": the world size
  bool data_parallel;
  double loss_rel = 5e-3;
  float param_tol = 1e-2f;
};

class Bf16Layouts : public test::PipelineFixture, public ::testing::WithParamInterface<Layout> {};

TEST_P(Bf16Layouts, TrainLikeOneProcessInBf16) {
  const Layout& l = GetParam();
  const int W = world_->size(), dp = l.data_parallel ? W : 1;
  std::vector<std::string> sets = {kBf16, "model.vocab_size=251"};
  const test::Reference& ref = reference(4, dp, sets);
  for (const std::string& s : l.sets) {
    const size_t n = s.find("=N");
    sets.push_back(n == std::string::npos ? s : s.substr(0, n + 1) + std::to_string(W));
  }
  Trainer par(config(4, std::string("bf16_") + l.name, sets), world_.get());
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref, l.param_tol, l.loss_rel);
  if (par.zero().stage() == 3) {  // the bf16 copies went with the gathered parameters
    int64_t held = 0;
    for (const ParamUnit& u : par.model().units()) held += u.holds_bf16() && u.params().size() == 0;
    EXPECT_EQ(held, 0);
  }
  EXPECT_NEAR(par.evaluate(), ref.val_loss, 2 * l.loss_rel * ref.val_loss);
}

INSTANTIATE_TEST_SUITE_P(
    Axes, Bf16Layouts,
    ::testing::Values(Layout{"zero1", {"parallel.dp=N", "parallel.zero_stage=1"}, true},
                      Layout{"zero3", {"parallel.dp=N", "parallel.zero_stage=3"}, true},
                      Layout{"sp", {"parallel.sp=N"}, false},
                      Layout{"pp_1f1b", {"parallel.pp=N"}, false},
                      Layout{"pp_zb", {"parallel.pp=N", "parallel.schedule=zb-h1"}, false},
                      Layout{"pp_vocab", {"parallel.pp=N", "parallel.vocab_parallel=true"}, false}),
    [](const auto& info) { return std::string(info.param.name); });

class Bf16Runs : public test::PipelineFixture {};

// bf16 is deterministic too: the same layout twice gives the same bits.
TEST_F(Bf16Runs, SameLayoutTwiceIsBitIdentical) {
  const std::vector<std::string> sets = {kBf16, "parallel.pp=2",
                                         "parallel.dp=" + std::to_string(world_->size() / 2)};
  std::vector<double> first;
  for (int run = 0; run < 2; ++run) {
    Trainer t(config(4, "bf16_twice" + std::to_string(run), sets), world_.get());
    const auto l = test::train_losses(t, 5);
    if (run == 0)
      first = l;
    else
      EXPECT_EQ(l, first);
  }
}

}  // namespace
}  // namespace strata
