// Whole-model training with LASP-2 sequence parallelism (sp = world size, and sp x dp with ZeRO
// at 4 ranks): the same losses and parameters as one process on the same global batch.
// Every rank runs the single-process reference itself (the size-1 communicator) to compare.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/data.h"
#include "launch/job_config.h"
#include "launch/prepare_data.h"
#include "launch/trainer.h"
#include "mpi_test_env.h"
#include "tests/test_corpus.h"
#include "tests/trainer_test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

class SequenceTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = test_mpi_env().world();
    dir_ = shared_temp_dir(*world_, "strata_sp");
    if (world_->rank() == 0) {
      std::string text;
      for (int i = 0; i < 2000; ++i)
        text +=
            "line " + std::to_string(i * 31 % 101) + (i % 2 ? ": linear state.\n" : ": softmax!\n");
      test::write_test_corpus(dir_, text, 4000);
    }
    world_->barrier();
  }
  void TearDown() override {
    world_->barrier();
    if (world_->rank() == 0) fs::remove_all(dir_);
  }

  // seq_len 24: chunks of 12 (sp 2) or 6 (sp 4), not multiples of the inner tile of 8.
  JobConfig config(int dp, int sp, int stage, const std::string& run,
                   std::vector<std::string> sets = {}) const {
    const std::string yaml = R"(
model: {vocab_size: 256, dim: 32, n_layers: 4, n_heads: 4, n_kv_heads: 2, ffn_dim: 48,
        layer_pattern: LLSL, linear_attention: {chunk_size: 8}}
data: {seq_len: 24}
train: {steps: 10, global_batch: 4, micro_batch: 1, eval_every: 0, eval_batches: 2}
optim: {lr: 5.0e-3, warmup_steps: 2}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
    sets.push_back("parallel.dp=" + std::to_string(dp));
    sets.push_back("parallel.sp=" + std::to_string(sp));
    sets.push_back("parallel.zero_stage=" + std::to_string(stage));
    return test::corpus_job(yaml, "sp_test.yaml", dir_, run, std::move(sets));
  }

  // EXPECT only (never ASSERT): a rank leaving early would strand the others in a collective.
  void expect_like_one_process(int dp, int sp, int stage, std::vector<std::string> sets = {},
                               float param_tol = 3e-4f) {
    Trainer ref(config(1, 1, 0, "ref_r" + std::to_string(world_->rank()), sets));
    Trainer par(config(dp, sp, stage, "par", sets), world_.get());
    const auto lr = test::train_losses(ref, 10), lp = test::train_losses(par, 10);
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(lp[i], lr[i], 3e-5 * lr[i]) << "step " << i + 1;
    int64_t bad = 0;
    float worst = 0;
    for (int64_t u = 0; u < par.zero().num_units(); ++u) {
      const ShardRange own = par.zero().owned(u);
      const float* p = par.zero().owned_params(u);
      const float* r = ref.model().units()[u].params().data() + own.begin;
      for (int64_t i = 0; i < own.size(); ++i) {
        bad += !(std::abs(p[i] - r[i]) <= param_tol);
        worst = std::max(worst, std::abs(p[i] - r[i]));
      }
    }
    EXPECT_EQ(bad, 0) << "parameters differ from one process, by up to " << worst;
    EXPECT_NEAR(par.evaluate(), ref.evaluate(), 1e-4);
  }

  std::unique_ptr<Comm> world_;
  std::string dir_;
};

TEST_F(SequenceTraining, AllRanksSequenceParallel) {
  expect_like_one_process(1, world_->size(), 0);
}

// Without decay or feature map the states are unnormalised sums over the sequence, so the
// chunked sums of one process and of sp ranks round apart more. The losses still agree to 3e-5;
// the parameters that drift most (up to 5.5e-4 after 10 steps, measured) are embedding rows of
// rare tokens, whose small gradients Adam divides by their own small RMS: a rounding difference
// there moves the update by a fraction of lr (5e-3). Hence 1e-3 here.
TEST_F(SequenceTraining, NoDecayIdentityFeatureMap) {
  expect_like_one_process(
      1, world_->size(), 0,
      {"model.linear_attention.decay=none", "model.linear_attention.feature_map=identity"}, 1e-3f);
}

TEST_F(SequenceTraining, SequenceTimesDataParallelWithZero) {
  if (world_->size() % 2 != 0 || world_->size() < 4) GTEST_SKIP() << "needs 4 ranks";
  expect_like_one_process(2, world_->size() / 2, 2);
  expect_like_one_process(2, world_->size() / 2, 3);
}

TEST_F(SequenceTraining, SequenceLengthMustDivide) {
  if (world_->size() < 2) GTEST_SKIP();
  const JobConfig bad = config(1, world_->size(), 0, "bad", {"data.seq_len=25"});
  EXPECT_THROW(Trainer(bad, world_.get()), InputError);
}

}  // namespace
}  // namespace strata
