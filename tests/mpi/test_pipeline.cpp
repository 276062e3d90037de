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
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "launch/job_config.h"
#include "launch/trainer.h"
#include "parallel/send_release.h"
#include "pipeline_fixture.h"
#include "tests/test_corpus.h"
#include "tests/trainer_test_util.h"

namespace strata {
namespace {

constexpr int kSteps = test::kPipelineSteps;
using test::Reference;

class PipelineTest : public test::PipelineFixture {};

using ScheduleCase = std::tuple<std::string, bool, int>;  // schedule, tied, micro-batches

class PipelineSchedule : public PipelineTest, public ::testing::WithParamInterface<ScheduleCase> {};

TEST_P(PipelineSchedule, TrainsLikeOneProcess) {
  const auto [schedule, tied, m] = GetParam();
  const int pp = world_->size();
  std::vector<std::string> sets = {"parallel.pp=" + std::to_string(pp),
                                   "parallel.schedule=" + schedule};
  if (schedule == "interleaved") sets.push_back("parallel.virtual_stages=2");
  if (tied) sets.push_back("model.tie_embeddings=true");
  const Reference& ref = reference(
      m, 1,
      tied ? std::vector<std::string>{"model.tie_embeddings=true"} : std::vector<std::string>{});
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

// Send buffers go where the schedule proves them received (parallel/send_release.h), not when
// MPI finds them done: the most held at once is what the release points give, in every
// schedule, whatever the timing. These messages are small enough to go eagerly, so a send
// freed on completion would be gone at the next poll.
TEST_F(PipelineTest, SendsAreHeldToTheScheduleReleasePoints) {
  const int pp = world_->size(), m = 8;
  for (const char* kind : {"1f1b", "zb-h1", "gpipe"}) {
    Trainer t(
        config(m, std::string("held_") + kind,
               {"parallel.pp=" + std::to_string(pp), std::string("parallel.schedule=") + kind}),
        world_.get());
    t.train_step();
    const Schedule& s = t.executor().schedule();
    const int r = t.mesh().pp_rank();
    const std::vector<size_t> release = send_release_points(s, r);
    int64_t held = 0, most = 0;
    std::multiset<size_t> pending;
    for (size_t i = 0; i < s.ranks[r].size(); ++i) {
      const ActionType type = s.ranks[r][i].type;
      if (type == ActionType::SEND_F || type == ActionType::SEND_B) {
        pending.insert(release[i]);
        most = std::max(most, ++held);
      }
      held -= static_cast<int64_t>(pending.erase(i));
    }
    EXPECT_EQ(t.executor().last_step().sends_held_max, most) << kind << " pp rank " << r;
    if (r == 0) {
      EXPECT_GE(most, 2) << kind;  // the warm-up forwards' sends, held together
    }
  }
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
  const Reference& ref = reference(4, c.dp);
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
  const Reference& ref = reference(4, 1);
  Trainer par(config(4, "off",
                     {"parallel.pp=" + std::to_string(world_->size()), "parallel.schedule=1f1b",
                      "offload.policy=" + GetParam(), "offload.dir=" + dir_ + "/swap"}),
              world_.get());
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref);
  // Summed over the ranks: the last block is kept under swap (offload.keep_last), and a stage
  // may hold only that one.
  const ActivationStore& store = par.activation_store();
  int64_t used = GetParam() == "swap" ? store.swapped_blocks() : store.recomputed_blocks();
  world_->all_reduce_sum_int64(&used, 1);
  EXPECT_GT(used, 0);
}

INSTANTIATE_TEST_SUITE_P(Policies, PipelineOffload, ::testing::Values("swap", "recompute"));

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
  const Reference& ref = reference(4, 1, {"model.tie_embeddings=true"});
  {
    auto sub = first_ranks(2);
    if (world_->rank() < 2) {
      Trainer a(config(4, "ra", {"parallel.pp=2", "model.tie_embeddings=true"}), sub.get());
      test::train_losses(a, 6);
      a.save_checkpoint();
    }
  }
  world_->barrier();
  auto sub = first_ranks(p.ranks);
  if (world_->rank() < p.ranks) {
    std::vector<std::string> sets = p.sets;
    sets.push_back("model.tie_embeddings=true");
    sets.push_back("checkpoint.dir=" + dir_ + "/ra/checkpoints");
    Trainer b(config(p.m, "rb", sets), sub.get());
    EXPECT_TRUE(b.resume(dir_ + "/ra/checkpoints"));
    EXPECT_EQ(b.step(), 6);
    const auto lb = test::train_losses(b, 6);
    expect_losses(lb, ref.losses, 6);
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
