// ZeRO under mpirun (-np 2 and -np 4): every stage trains with the same losses and final
// parameters as one process on the same global batch; per-step communication volumes are the
// ZeRO paper's; a checkpoint written by one layout (ranks, stage) resumes under another.
// Every rank runs the single-process reference itself (the size-1 communicator) to compare.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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

class ZeroTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = test_mpi_env().world();
    dir_ = shared_temp_dir(*world_, "strata_zero");
    ASSERT_FALSE(dir_.empty());
    if (world_->rank() == 0) {
      std::string text;
      for (int i = 0; i < 2000; ++i)
        text += "row " + std::to_string(i * 7919 % 997) + (i % 3 ? " alpha beta\n" : " gamma.\n");
      test::write_test_corpus(dir_, text, 3000);
    }
    world_->barrier();
  }
  void TearDown() override {
    world_->barrier();
    if (world_->rank() == 0) fs::remove_all(dir_);
  }

  // global_batch 8: 4 ranks x 2 micro-batches of 1, or 2 ranks x 4 — accumulation is exercised.
  JobConfig config(int dp, int stage, const std::string& run,
                   std::vector<std::string> sets = {}) const {
    const std::string yaml = R"(
model: {vocab_size: 256, dim: 32, n_layers: 3, n_heads: 4, n_kv_heads: 2, ffn_dim: 48,
        layer_pattern: LLS, linear_attention: {chunk_size: 8}}
data: {seq_len: 16}
train: {steps: 20, global_batch: 8, micro_batch: 1, eval_every: 0, eval_batches: 3}
optim: {lr: 5.0e-3, warmup_steps: 2}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
    sets.push_back("parallel.dp=" + std::to_string(dp));
    sets.push_back("parallel.zero_stage=" + std::to_string(stage));
    return test::corpus_job(yaml, "zero_test.yaml", dir_, run, std::move(sets));
  }

  // This rank's owned parameter values of every unit against the same ranges of the reference.
  // EXPECT, never ASSERT, in these tests: a rank leaving a test early would leave the other
  // ranks waiting in a collective.
  static void expect_same_params(Trainer& par, Trainer& ref, float tol) {
    int64_t bad = 0, first_unit = -1, first_elem = -1;
    for (int64_t u = 0; u < par.zero().num_units(); ++u) {
      const ShardRange own = par.zero().owned(u);
      const float* p = par.zero().owned_params(u);
      const float* r = ref.model().units()[u].params().data() + own.begin;
      for (int64_t i = 0; i < own.size(); ++i)
        if (!(std::abs(p[i] - r[i]) <= tol) && bad++ == 0) {
          first_unit = u;
          first_elem = own.begin + i;
        }
    }
    EXPECT_EQ(bad, 0) << "parameters differ from one process, first at unit " << first_unit
                      << " element " << first_elem;
  }

  std::unique_ptr<Comm> world_;
  std::string dir_;
};

class ZeroStage : public ZeroTest, public ::testing::WithParamInterface<int> {};

TEST_P(ZeroStage, TrainsLikeOneProcess) {
  const int stage = GetParam(), n = world_->size();
  Trainer ref(config(1, 0, "ref_r" + std::to_string(world_->rank())));
  Trainer par(config(n, stage, "par"), world_.get());
  const auto lr = test::train_losses(ref, 20), lp = test::train_losses(par, 20);
  for (int i = 0; i < 20; ++i) EXPECT_NEAR(lp[i], lr[i], 2e-5 * lr[i]) << "step " << i + 1;
  expect_same_params(par, ref, 2e-4f);
  EXPECT_NEAR(par.evaluate(), ref.evaluate(), 1e-4);
}

TEST_P(ZeroStage, TiedEmbeddingsTrainLikeOneProcess) {
  const int stage = GetParam(), n = world_->size();
  Trainer ref(
      config(1, 0, "tref_r" + std::to_string(world_->rank()), {"model.tie_embeddings=true"}));
  Trainer par(config(n, stage, "tpar", {"model.tie_embeddings=true"}), world_.get());
  const auto lr = test::train_losses(ref, 8), lp = test::train_losses(par, 8);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(lp[i], lr[i], 2e-5 * lr[i]) << "step " << i + 1;
  expect_same_params(par, ref, 2e-4f);
}

// The same layout resumes bit for bit: losses of steps 7-12 and the final parameters equal the
// uninterrupted run's exactly (every rank reloads its own shard of states).
TEST_P(ZeroStage, SameLayoutResumesBitIdentically) {
  const int stage = GetParam(), n = world_->size();
  Trainer full(config(n, stage, "full"), world_.get());
  const auto lf = test::train_losses(full, 12);
  {
    Trainer first(config(n, stage, "split"), world_.get());
    test::train_losses(first, 6);
    first.save_checkpoint();
  }
  Trainer second(config(n, stage, "split"), world_.get());
  EXPECT_TRUE(second.resume(dir_ + "/split/checkpoints"));
  const auto ls = test::train_losses(second, 6);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(ls[i], lf[6 + i]) << "step " << 7 + i;
  int64_t differ = 0;
  for (int64_t u = 0; u < full.zero().num_units(); ++u) {
    const ShardRange own = full.zero().owned(u);
    differ += std::memcmp(full.zero().owned_params(u), second.zero().owned_params(u),
                          sizeof(float) * own.size()) != 0;
  }
  EXPECT_EQ(differ, 0) << "units whose parameters differ after resuming";
}

INSTANTIATE_TEST_SUITE_P(Stages, ZeroStage, ::testing::Values(0, 1, 2, 3));

// Bytes per step on the dp communicator, in the ZeRO paper's convention (an all-reduce of Psi
// counts 2 Psi): stages 0-2 move 2 Psi, stage 3 two parameter all-gathers (the head stays
// gathered from its forward into its backward) plus a reduce-scatter.
TEST_F(ZeroTest, CommunicationVolumePerStep) {
  const int n = world_->size();
  int64_t bytes[4] = {};
  int64_t psi = 0, psi_head = 0;
  for (int stage = 0; stage < 4; ++stage) {
    // One micro-batch per rank: volumes per step without accumulation.
    Trainer t(config(n, stage, "vol" + std::to_string(stage),
                     {"train.micro_batch=" + std::to_string(8 / n)}),
              world_.get());
    psi = 0;  // bytes of all units, each padded to a multiple of the rank count
    for (auto& u : t.model().units()) {
      const int64_t shard = (u.numel() + n - 1) / n;
      psi += shard * n * 4;
    }
    const auto& head = t.model().units().back();
    psi_head = (head.numel() + n - 1) / n * n * 4;
    t.train_step();  // warm: nothing differs, but keep the measured step a steady one
    t.mesh().dp_comm().reset_stats();
    t.train_step();
    const CommStats& s = t.mesh().dp_comm().stats();
    // The loss sum and the squared gradient norm: two all-reduces of one double each.
    EXPECT_EQ(s[CommOp::all_reduce].bytes - (stage == 0 ? 2 * psi : 0), 2 * 2 * 8) << stage;
    bytes[stage] = s[CommOp::all_reduce].bytes - 32 + s[CommOp::reduce_scatter].bytes +
                   s[CommOp::all_gather].bytes;
    if (stage == 1 || stage == 2) {
      EXPECT_EQ(s[CommOp::reduce_scatter].bytes, psi) << stage;
      EXPECT_EQ(s[CommOp::all_gather].bytes, psi) << stage;
    }
    if (stage == 3) {
      EXPECT_EQ(s[CommOp::reduce_scatter].bytes, psi);
      EXPECT_EQ(s[CommOp::all_gather].bytes, 2 * psi - psi_head);
    }
  }
  EXPECT_EQ(bytes[0], 2 * psi);
  EXPECT_EQ(bytes[1], bytes[0]);  // reduce-scatter + all-gather == all-reduce
  EXPECT_EQ(bytes[2], bytes[0]);
  EXPECT_LE(bytes[3], 3 * psi);  // 1.5x the all-reduce volume
  EXPECT_GT(bytes[3], 2 * psi);
}

// A sub-communicator of the first `k` world ranks: a real smaller job inside this mpirun.
std::unique_ptr<Comm> first_ranks(Comm& world, int k) {
  return world.split(world.rank() < k ? 0 : 1, world.rank(), "world");
}

struct Reshard {
  int ranks_a, stage_a, ranks_b, stage_b;  // ranks as a divisor of the world size
};

class ZeroReshard : public ZeroTest, public ::testing::WithParamInterface<Reshard> {};

TEST_P(ZeroReshard, ResumesUnderAnotherLayout) {
  const Reshard p = GetParam();
  const int n = world_->size();
  const int ka = std::max(1, n / p.ranks_a), kb = std::max(1, n / p.ranks_b);
  Trainer ref(config(1, 0, "rref_r" + std::to_string(world_->rank())));
  const auto lr = test::train_losses(ref, 12);
  {
    auto sub = first_ranks(*world_, ka);
    if (world_->rank() < ka) {
      Trainer a(config(ka, p.stage_a, "ra"), sub.get());
      test::train_losses(a, 6);
      a.save_checkpoint();
    }
  }
  world_->barrier();
  auto sub = first_ranks(*world_, kb);
  if (world_->rank() < kb) {
    Trainer b(config(kb, p.stage_b, "rb", {"checkpoint.dir=" + dir_ + "/ra/checkpoints"}),
              sub.get());
    EXPECT_TRUE(b.resume(dir_ + "/ra/checkpoints"));
    EXPECT_EQ(b.step(), 6);
    const auto lb = test::train_losses(b, 6);
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(lb[i], lr[6 + i], 2e-5 * lr[6 + i]) << "step " << 7 + i;
    expect_same_params(b, ref, 2e-4f);
  }
}

// ranks_a/ranks_b are fractions of the world: 1 = all ranks, 2 = half, N = one rank.
INSTANTIATE_TEST_SUITE_P(Layouts, ZeroReshard,
                         ::testing::Values(Reshard{2, 2, 1, 2},  // half -> all (2->4 at -np 4)
                                           Reshard{1, 2, 2, 2},  // all -> half (4->2)
                                           Reshard{1, 2, 4, 0},  // all -> one process (stage 0)
                                           Reshard{1, 3, 2, 1},  // stage 3 -> stage 1, fewer ranks
                                           Reshard{4, 0, 1, 3}));  // one process -> all, stage 3

}  // namespace
}  // namespace strata
