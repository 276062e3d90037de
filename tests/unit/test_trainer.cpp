// Trainer-level guarantees on CPU: the same config and seed give bit-identical losses; a run
// resumed from a checkpoint continues bit-identically; recompute trains exactly like keep;
// gradient accumulation over micro-batches equals one big batch (fp32 tolerance).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "launch/data.h"
#include "launch/job_config.h"
#include "launch/prepare_data.h"
#include "launch/trainer.h"
#include "tests/test_corpus.h"
#include "tests/trainer_test_util.h"

using namespace strata;
namespace fs = std::filesystem;

namespace {

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata_trainer_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A small deterministic corpus: enough text for a few hundred windows.
    std::string text;
    for (int i = 0; i < 3000; ++i)
      text += "line " + std::to_string(i * 7919 % 1000) + ": the quick brown fox " +
              (i % 3 ? "jumps over the lazy dog.\n" : "naps.\n");
    test::write_test_corpus(dir_, text, 4000);
  }
  void TearDown() override { fs::remove_all(dir_); }

  JobConfig config(const std::string& run, std::vector<std::string> sets = {}) const {
    const std::string yaml = R"(
model: {vocab_size: 256, dim: 32, n_layers: 3, n_heads: 4, n_kv_heads: 2, ffn_dim: 64,
        layer_pattern: LLS, linear_attention: {chunk_size: 8}}
data: {seq_len: 24}
train: {steps: 20, global_batch: 4, micro_batch: 2, eval_every: 0, eval_batches: 2}
optim: {lr: 1.0e-2, warmup_steps: 3}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
    return test::corpus_job(yaml, "test.yaml", dir_, run, std::move(sets));
  }

  static std::vector<float> all_params(Trainer& t) {
    std::vector<float> p;
    for (const auto& u : t.model().units())
      p.insert(p.end(), u.params().data(), u.params().data() + u.numel());
    return p;
  }

  std::string dir_;
};

TEST_F(TrainerTest, SameConfigSameSeedBitIdenticalLosses) {
  Trainer a(config("a")), b(config("b"));
  EXPECT_EQ(test::train_losses(a, 5), test::train_losses(b, 5));
}

TEST_F(TrainerTest, ResumedRunContinuesBitIdentically) {
  Trainer full(config("full"));
  const auto reference = test::train_losses(full, 20);
  EXPECT_LT(reference.back(), reference.front());

  Trainer first(config("split"));
  test::train_losses(first, 10);
  first.save_checkpoint();

  Trainer second(config("split"));
  ASSERT_TRUE(second.resume(dir_ + "/split/checkpoints"));
  EXPECT_EQ(second.step(), 10);
  const auto resumed = test::train_losses(second, 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(resumed[i], reference[10 + i]) << "step " << 11 + i;
  EXPECT_EQ(all_params(second), all_params(full));
}

// The bf16 precision keeps both guarantees: the same config twice, and a resumed run (the bf16
// weight copies are cast again from the loaded fp32 masters), give the same bits; and swapping
// its bf16 activations through the NVMe tier changes nothing either.
TEST_F(TrainerTest, Bf16IsBitIdenticalRunToRunAcrossResumeAndUnderSwap) {
  const std::string bf16 = "train.precision=bf16";
  Trainer full(config("bf_full", {bf16})), again(config("bf_again", {bf16}));
  const auto reference = test::train_losses(full, 12);
  EXPECT_EQ(test::train_losses(again, 12), reference);
  EXPECT_LT(reference.back(), reference.front());
  Trainer fp32(config("bf_fp32"));
  EXPECT_NE(test::train_losses(fp32, 12), reference);  // the GEMMs did run in bf16

  Trainer first(config("bf_split", {bf16}));
  test::train_losses(first, 6);
  first.save_checkpoint();
  Trainer second(config("bf_split", {bf16}));
  ASSERT_TRUE(second.resume(dir_ + "/bf_split/checkpoints"));
  const auto resumed = test::train_losses(second, 6);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(resumed[i], reference[6 + i]) << "step " << 7 + i;
  EXPECT_EQ(all_params(second), all_params(full));

  Trainer swap(config("bf_sw", {bf16, "offload.policy=swap", "offload.tier=nvme",
                                "offload.dir=" + dir_ + "/bf_swap", "offload.keep_last=0"}));
  const auto swapped = test::train_losses(swap, 4);
  EXPECT_EQ(swapped, std::vector<double>(reference.begin(), reference.begin() + 4));
}

TEST_F(TrainerTest, RecomputeTrainsBitIdenticallyToKeep) {
  Trainer keep(config("keep")), recompute(config("re", {"offload.policy=recompute"}));
  EXPECT_EQ(test::train_losses(keep, 4), test::train_losses(recompute, 4));
  EXPECT_EQ(all_params(keep), all_params(recompute));
}

TEST_F(TrainerTest, SwapTrainsBitIdenticallyToKeep) {
  const std::string swap_dir = dir_ + "/swap";
  auto activation_peak = [](Trainer& t) {
    MemoryTracker::instance().reset_peaks();
    const double loss = t.train_step().loss;
    const auto s = MemoryTracker::instance().snapshot();
    return std::make_pair(loss, s.peak[static_cast<int>(MemCategory::activations)]);
  };
  {
    // keep_last=0: every block goes through the swap file (the default keeps the last one).
    Trainer keep(config("keep")),
        swap(config("sw", {"offload.policy=swap", "offload.tier=nvme", "offload.dir=" + swap_dir,
                           "offload.keep_last=0"}));
    int files = 0;
    for (const auto& e : fs::directory_iterator(swap_dir))
      files += e.path().filename().string().starts_with("strata_swap_");
    EXPECT_EQ(files, 1);
    const auto [keep_loss, keep_peak] = activation_peak(keep);
    const auto [swap_loss, swap_peak] = activation_peak(swap);
    EXPECT_EQ(keep_loss, swap_loss);
    EXPECT_LT(swap_peak, keep_peak);  // the saved sets left activation memory
    EXPECT_EQ(test::train_losses(keep, 3), test::train_losses(swap, 3));
    EXPECT_EQ(all_params(keep), all_params(swap));
  }
  EXPECT_TRUE(fs::is_empty(swap_dir));  // the swap file went with the trainer
}

// offload.policy auto: step 1 recomputes every block and measures; from step 2 on the plan for a
// budget below what keeping everything needs mixes policies, and training stays bit-identical.
TEST_F(TrainerTest, AutoPlansWithinTheBudgetAndTrainsBitIdentically) {
  const std::vector<std::string> bigger = {"model.dim=64", "model.ffn_dim=176", "data.seq_len=256"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), bigger.begin(), bigger.end());
    return more;
  };
  Trainer keep(config("keep", with({})));
  Trainer automatic(config("auto", with({"offload.policy=auto", "offload.budget_mb=3",
                                         "offload.tier=nvme", "offload.dir=" + dir_ + "/swap"})));
  const auto losses = test::train_losses(automatic, 4);
  EXPECT_EQ(test::train_losses(keep, 4), losses);
  EXPECT_EQ(all_params(keep), all_params(automatic));

  const ActivationStore& store = automatic.activation_store();
  int64_t keep_bytes = 0;
  for (const BlockMeasure& m : store.measures()) {
    EXPECT_GT(m.saved_bytes, m.input_bytes);
    EXPECT_GT(m.forward_s, 0);
    EXPECT_GT(m.backward_s, 0);
    keep_bytes += m.saved_bytes;
  }
  ASSERT_GT(keep_bytes, int64_t{3} << 20) << "the budget must force a plan other than keep";
  EXPECT_NE(store.policy(0), ActivationPolicy::keep);
  EXPECT_EQ(store.policy(store.n_blocks() - 1), ActivationPolicy::keep);

  // A budget nothing fits is a clear error naming the key, after the measuring step.
  Trainer tiny(
      config("tiny", with({"offload.policy=auto", "offload.budget_mb=1", "offload.tier=host"})));
  try {
    tiny.train_step();
    FAIL() << "expected the plan to fail";
  } catch (const StrataError& e) {
    EXPECT_NE(std::string(e.what()).find("offload.budget_mb"), std::string::npos) << e.what();
  }
}

TEST_F(TrainerTest, GradientAccumulationEqualsOneBatch) {
  Trainer acc(config("acc", {"train.micro_batch=1"})), one(config("one", {"train.micro_batch=4"}));
  const auto la = test::train_losses(acc, 3), lo = test::train_losses(one, 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(la[i], lo[i], 1e-5 * std::abs(lo[i])) << i;
  const auto pa = all_params(acc), po = all_params(one);
  for (size_t i = 0; i < pa.size(); ++i) ASSERT_NEAR(pa[i], po[i], 1e-5f) << i;
}

TEST_F(TrainerTest, EvaluateIsRepeatable) {
  Trainer t(config("eval"));
  const double a = t.evaluate(), b = t.evaluate();
  EXPECT_EQ(a, b);
  EXPECT_NEAR(a, std::log(256.0), 0.3);  // near-uniform predictions at init
}

}  // namespace

// One process runs every schedule through the same executor: gpipe, zb-h1 (B split into I and
// W) and interleaved (2 and 3 stages on the one rank, handing activations over in memory) train
// bit-identically to 1f1b, since each unit still sees its micro-batches in order.
TEST_F(TrainerTest, EverySingleProcessScheduleTrainsBitIdentically) {
  Trainer ref(config("1f1b"));
  const auto lr = test::train_losses(ref, 4);
  const std::vector<std::vector<std::string>> layouts = {
      {"parallel.schedule=gpipe"},
      {"parallel.schedule=zb-h1"},
      {"parallel.schedule=interleaved", "parallel.virtual_stages=2"},
      {"parallel.schedule=interleaved", "parallel.virtual_stages=3"}};
  for (const auto& sets : layouts) {
    Trainer t(config("s" + std::to_string(&sets - layouts.data()), sets));
    EXPECT_EQ(test::train_losses(t, 4), lr) << sets.front();
    EXPECT_EQ(all_params(t), all_params(ref)) << sets.front();
    EXPECT_GT(t.executor().last_step().compute_s, 0);
    EXPECT_EQ(t.executor().last_step().bytes_sent, 0);  // nothing leaves the process
  }
}
