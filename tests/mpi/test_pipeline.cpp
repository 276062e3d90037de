// Pipeline parallelism under mpirun (-np 2: pp = 2; -np 4: pp = 4, pp 2 x dp 2, pp 2 x sp 2):
// every schedule trains with the same losses (2e-5 relative) and final parameters (2e-4) as one
// process over 20 steps, tied and untied, 4 and 8 micro-batches; ZeRO 1 and 3 with dp, LASP-2
// with sp, swap and recompute under 1f1b; the same layout twice is bit-identical; checkpoints
// move between pipeline layouts. Every rank runs the single-process reference itself (the
// size-1 communicator), once per configuration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "launch/job_config.h"
#include "launch/trainer.h"
#include "mpi_test_env.h"
#include "tests/test_corpus.h"
#include "tests/trainer_test_util.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

constexpr int kSteps = 20;

// What one process trained to: the reference the parallel runs are held against.
struct Reference {
  std::vector<double> losses;
  std::vector<std::vector<float>> params;  // per model unit
  double val_loss = 0;
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = test_mpi_env().world();
    dir_ = shared_temp_dir(*world_, "strata_pp");
    ASSERT_FALSE(dir_.empty());
    if (world_->rank() == 0) {
      std::string text;
      for (int i = 0; i < 2000; ++i)
        text += "stage " + std::to_string(i * 613 % 509) + (i % 3 ? " bubble flush\n" : " W.\n");
      test::write_test_corpus(dir_, text, 3000);
    }
    world_->barrier();
  }
  void TearDown() override {
    world_->barrier();
    if (world_->rank() == 0) fs::remove_all(dir_);
  }

  // 8 blocks: pp 4 with 2 virtual stages still gives every stage one. m micro-batches of one
  // sequence per data-parallel rank. lr 2e-3: at 5e-3 the tied model with a global batch of 4
  // is chaotic enough (a gradient-norm spike of 24 at step 11) that data parallelism alone
  // drifts 5e-4 from one process by step 14; at 2e-3 every layout stays within 2e-6.
  JobConfig config(int m, const std::string& run, std::vector<std::string> sets = {}) const {
    const std::string yaml = R"(
model: {vocab_size: 256, dim: 32, n_layers: 8, n_heads: 4, n_kv_heads: 2, ffn_dim: 48,
        layer_pattern: LLSL, linear_attention: {chunk_size: 8}}
data: {seq_len: 16}
train: {steps: 20, micro_batch: 1, eval_every: 0, eval_batches: 3}
optim: {lr: 2.0e-3, warmup_steps: 2}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
    int dp = 1;
    for (const auto& s : sets)
      if (s.rfind("parallel.dp=", 0) == 0) dp = std::stoi(s.substr(12));
    sets.insert(sets.begin(), "train.global_batch=" + std::to_string(m * dp));
    return test::corpus_job(yaml, "pipeline_test.yaml", dir_, run, std::move(sets));
  }

  // One process on the same global batch (dp ranks' micro-batches in one), cached per key.
  const Reference& reference(int m, int dp, bool tied) {
    // Every test writes the same corpus (into its own directory): one reference per shape.
    static std::map<std::tuple<int, int, bool>, Reference> cache;
    auto key = std::make_tuple(m, dp, tied);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    std::vector<std::string> sets = {"train.global_batch=" + std::to_string(m * dp)};
    if (tied) sets.push_back("model.tie_embeddings=true");
    JobConfig c = config(m * dp, "ref_r" + std::to_string(world_->rank()), sets);
    Trainer ref(c);
    Reference r;
    r.losses = test::train_losses(ref, kSteps);
    for (auto& u : ref.model().units())
      r.params.emplace_back(u.params().data(), u.params().data() + u.numel());
    r.val_loss = ref.evaluate();
    return cache.emplace(key, std::move(r)).first->second;
  }

  // Losses within 2e-5 relative, this rank's owned parameters of every unit it holds within tol.
  // EXPECT, never ASSERT: a rank leaving a test early would leave the others waiting.
  static void expect_like(Trainer& par, const std::vector<double>& lp, const Reference& ref,
                          float tol = 2e-4f) {
    for (size_t i = 0; i < lp.size(); ++i)
      EXPECT_NEAR(lp[i], ref.losses[i], 2e-5 * ref.losses[i]) << "step " << i + 1;
    int64_t bad = 0, first_unit = -1, first_elem = -1;
    for (int64_t s = 0; s < par.zero().num_units(); ++s) {
      const int64_t id = par.zero().unit_id(s);
      const ShardRange own = par.zero().owned(s);
      const float* p = par.zero().owned_params(s);
      const float* r = ref.params[static_cast<size_t>(id)].data() + own.begin;
      for (int64_t i = 0; i < own.size(); ++i)
        if (!(std::abs(p[i] - r[i]) <= tol) && bad++ == 0) {
          first_unit = id;
          first_elem = own.begin + i;
        }
    }
    EXPECT_EQ(bad, 0) << "parameters differ from one process, first at unit " << first_unit
                      << " element " << first_elem;
  }

  std::unique_ptr<Comm> world_;
  std::string dir_;
};

using ScheduleCase = std::tuple<std::string, bool, int>;  // schedule, tied, micro-batches

class PipelineSchedule : public PipelineTest, public ::testing::WithParamInterface<ScheduleCase> {};

TEST_P(PipelineSchedule, TrainsLikeOneProcess) {
  const auto [schedule, tied, m] = GetParam();
  const int pp = world_->size();
  std::vector<std::string> sets = {"parallel.pp=" + std::to_string(pp),
                                   "parallel.schedule=" + schedule};
  if (schedule == "interleaved") sets.push_back("parallel.virtual_stages=2");
  if (tied) sets.push_back("model.tie_embeddings=true");
  const Reference& ref = reference(m, 1, tied);
  Trainer par(config(m, "par", sets), world_.get());
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref);
  EXPECT_NEAR(par.evaluate(), ref.val_loss, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Schedules, PipelineSchedule,
                         ::testing::Combine(::testing::Values("gpipe", "1f1b", "interleaved",
                                                              "zb-h1"),
                                            ::testing::Bool(), ::testing::Values(4, 8)),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param);
                           for (auto& ch : s)
                             if (ch == '-') ch = '_';
                           return s + (std::get<1>(info.param) ? "_tied_m" : "_untied_m") +
                                  std::to_string(std::get<2>(info.param));
                         });

// The same layout twice: bit-identical losses and parameters (CPU determinism).
TEST_F(PipelineTest, SameLayoutTwiceIsBitIdentical) {
  const std::vector<std::string> sets = {"parallel.pp=" + std::to_string(world_->size()),
                                         "parallel.schedule=zb-h1"};
  Trainer a(config(4, "twice_a", sets), world_.get());
  Trainer b(config(4, "twice_b", sets), world_.get());
  const auto la = test::train_losses(a, 6), lb = test::train_losses(b, 6);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
  int64_t differ = 0;
  for (int64_t s = 0; s < a.zero().num_units(); ++s)
    differ += std::memcmp(a.zero().owned_params(s), b.zero().owned_params(s),
                          sizeof(float) * a.zero().owned(s).size()) != 0;
  EXPECT_EQ(differ, 0);
}

// Activations and their gradients cross each stage boundary once per micro-batch each way:
// 2 * m * tokens * dim * 4 bytes per boundary, counted by the executor and by the pp group.
TEST_F(PipelineTest, PointToPointBytesPerStep) {
  const int pp = world_->size(), m = 8;
  Trainer t(config(m, "bytes", {"parallel.pp=" + std::to_string(pp)}), world_.get());
  t.train_step();
  const int64_t msg = 16 * 32 * 4;  // one micro-batch: 16 tokens x dim 32, fp32
  const int r = t.mesh().pp_rank();
  const int64_t boundaries = (r > 0) + (r < pp - 1);  // this rank sends across each once per mb
  EXPECT_EQ(t.executor().last_step().bytes_sent, boundaries * m * msg);
  EXPECT_EQ(t.executor().last_step().messages_sent, boundaries * m);
  EXPECT_GT(t.executor().last_step().compute_s, 0);
}

struct Composed {
  const char* name;
  std::vector<std::string> sets;  // on top of pp 2
  int dp;
};

class PipelineComposed : public PipelineTest, public ::testing::WithParamInterface<Composed> {};

TEST_P(PipelineComposed, TrainsLikeOneProcess) {
  const Composed& c = GetParam();
  if (world_->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  std::vector<std::string> sets = c.sets;
  sets.push_back("parallel.pp=2");
  const Reference& ref = reference(4, c.dp, false);
  Trainer par(config(4, "comp", sets), world_.get());
  par.mesh().dp_comm().reset_stats();
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref);
  EXPECT_NEAR(par.evaluate(), ref.val_loss, 1e-4);
  if (par.zero().stage() >= 2) {
    // Reduce-scattered once per step per unit (not once per micro-batch): 20 steps x psi.
    int64_t psi = 0;
    for (int64_t s = 0; s < par.zero().num_units(); ++s) {
      const int64_t n = par.zero().unit(s).numel, dp = c.dp;
      psi += (n + dp - 1) / dp * dp * 4;
    }
    EXPECT_EQ(par.mesh().dp_comm().stats()[CommOp::reduce_scatter].bytes, kSteps * psi);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PipelineComposed,
    ::testing::Values(Composed{"dp2_zero1", {"parallel.dp=2", "parallel.zero_stage=1"}, 2},
                      Composed{"dp2_zero2", {"parallel.dp=2", "parallel.zero_stage=2"}, 2},
                      Composed{"dp2_zero3", {"parallel.dp=2", "parallel.zero_stage=3"}, 2},
                      Composed{"sp2", {"parallel.sp=2"}, 1},
                      Composed{"sp2_zb", {"parallel.sp=2", "parallel.schedule=zb-h1"}, 1}),
    [](const auto& info) { return std::string(info.param.name); });

class PipelineOffload : public PipelineTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(PipelineOffload, TrainsLikeOneProcessUnder1F1B) {
  const Reference& ref = reference(4, 1, false);
  Trainer par(config(4, "off",
                     {"parallel.pp=" + std::to_string(world_->size()), "parallel.schedule=1f1b",
                      "offload.policy=" + GetParam(), "offload.dir=" + dir_ + "/swap"}),
              world_.get());
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref);
  const ActivationStore& store = par.activation_store();
  EXPECT_GT(GetParam() == "swap" ? store.swapped_blocks() : store.recomputed_blocks(), 0);
}

INSTANTIATE_TEST_SUITE_P(Policies, PipelineOffload, ::testing::Values("swap", "recompute"));

// A sub-communicator of the first `k` world ranks: a real smaller job inside this mpirun.
std::unique_ptr<Comm> first_ranks(Comm& world, int k) {
  return world.split(world.rank() < k ? 0 : 1, world.rank(), "world");
}

struct Resume {
  const char* name;
  int ranks;                      // of the resumed job
  int m;                          // its micro-batches per data-parallel rank (global batch 4)
  std::vector<std::string> sets;  // its layout
};

class PipelineResume : public PipelineTest, public ::testing::WithParamInterface<Resume> {};

// Trained 6 steps at pp 2 (1f1b), resumed under another layout for 6 more: the losses and
// parameters of the uninterrupted single process.
TEST_P(PipelineResume, ContinuesUnderAnotherLayout) {
  const Resume& p = GetParam();
  if (p.ranks > world_->size()) GTEST_SKIP() << "needs " << p.ranks << " ranks";
  const Reference& ref = reference(4, 1, true);
  {
    auto sub = first_ranks(*world_, 2);
    if (world_->rank() < 2) {
      Trainer a(config(4, "ra", {"parallel.pp=2", "model.tie_embeddings=true"}), sub.get());
      test::train_losses(a, 6);
      a.save_checkpoint();
    }
  }
  world_->barrier();
  auto sub = first_ranks(*world_, p.ranks);
  if (world_->rank() < p.ranks) {
    std::vector<std::string> sets = p.sets;
    sets.push_back("model.tie_embeddings=true");
    sets.push_back("checkpoint.dir=" + dir_ + "/ra/checkpoints");
    Trainer b(config(p.m, "rb", sets), sub.get());
    EXPECT_TRUE(b.resume(dir_ + "/ra/checkpoints"));
    EXPECT_EQ(b.step(), 6);
    const auto lb = test::train_losses(b, 6);
    for (int i = 0; i < 6; ++i)
      EXPECT_NEAR(lb[i], ref.losses[6 + i], 2e-5 * ref.losses[6 + i]) << "step " << 7 + i;
  }
}

// A checkpoint of another model is refused as a whole, naming what differs, on every rank
// (each checks the full tensor list, so no rank is left waiting).
TEST_F(PipelineTest, ACheckpointOfAnotherModelIsRefused) {
  const std::string pp = "parallel.pp=" + std::to_string(world_->size());
  {
    Trainer a(config(4, "deep", {pp}), world_.get());
    a.train_step();
    a.save_checkpoint();
  }
  auto message = [&](std::vector<std::string> sets) {
    sets.push_back(pp);
    sets.push_back("model.n_layers=" + std::to_string(std::max(4, world_->size())));
    Trainer b(config(4, "shallow", sets), world_.get());
    try {
      b.resume(dir_ + "/deep/checkpoints");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string fewer = message({});
  EXPECT_NE(fewer.find("tensor(s) the model does not have, e.g. 'model.layers."), std::string::npos)
      << fewer;
  const std::string tied = message({"model.n_layers=8", "model.tie_embeddings=true"});
  EXPECT_NE(tied.find("e.g. 'lm_head.weight'"), std::string::npos) << tied;
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PipelineResume,
    ::testing::Values(
        Resume{"pp1", 1, 4, {}},
        Resume{"pp2_zb", 2, 4, {"parallel.pp=2", "parallel.schedule=zb-h1"}},
        Resume{"pp4", 4, 4, {"parallel.pp=4"}},
        Resume{"pp2_dp2_zero3", 4, 2, {"parallel.pp=2", "parallel.dp=2", "parallel.zero_stage=3"}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace strata
