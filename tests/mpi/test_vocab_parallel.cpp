// Vocabulary parallelism under mpirun (-np 2: pp 2; -np 4: pp 4, pp 2 x dp 2 at ZeRO 1 and 3,
// pp 2 x sp 2): the embedding and the LM head split by rows over every pipeline rank train with
// the same losses (2e-5) and final parameters (2e-4) as one process over 20 steps, under 1f1b
// and zb-h1, tied and untied, with a vocabulary no rank count divides (251: 126 or 63 rows a
// rank, the last padded); the head op over a real MPI group handles ignored targets (-1); a
// vocabulary-parallel checkpoint resumes with it off, with another pp, and in one process.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "models/vocab_head.h"
#include "parallel/watchdog.h"
#include "pipeline_fixture.h"

namespace strata {
namespace {

using test::Reference;
constexpr int kSteps = test::kPipelineSteps;
const std::string kVocab = "model.vocab_size=251";

class VocabParallel : public test::PipelineFixture {};

// The model settings of a case: the odd vocabulary, tied or not.
std::vector<std::string> model_sets(bool tied) {
  std::vector<std::string> s = {kVocab};
  if (tied) s.push_back("model.tie_embeddings=true");
  return s;
}

using Case = std::tuple<std::string, bool>;  // schedule, tied
class VocabSchedule : public VocabParallel, public ::testing::WithParamInterface<Case> {};

TEST_P(VocabSchedule, TrainsLikeOneProcess) {
  const auto [schedule, tied] = GetParam();
  std::vector<std::string> sets = model_sets(tied);
  const Reference& ref = reference(4, 1, sets);
  sets.insert(sets.end(), {"parallel.pp=" + std::to_string(world_->size()),
                           "parallel.schedule=" + schedule, "parallel.vocab_parallel=true"});
  Trainer par(config(4, "vp", sets), world_.get());
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref);
  EXPECT_NEAR(par.evaluate(), ref.val_loss, 1e-4);
  EXPECT_GT(par.executor().last_step().vocab_s, 0);
}

INSTANTIATE_TEST_SUITE_P(Schedules, VocabSchedule,
                         ::testing::Combine(::testing::Values("1f1b", "zb-h1"), ::testing::Bool()),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param);
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s + (std::get<1>(info.param) ? "_tied" : "_untied");
                         });

struct Composed {
  const char* name;
  std::vector<std::string> sets;  // on top of pp 2, vocabulary parallel
  int dp;
};
class VocabComposed : public VocabParallel, public ::testing::WithParamInterface<Composed> {};

TEST_P(VocabComposed, TrainsLikeOneProcess) {
  if (world_->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const Composed& c = GetParam();
  const Reference& ref = reference(4, c.dp, {kVocab});
  std::vector<std::string> sets = c.sets;
  sets.insert(sets.end(), {kVocab, "parallel.pp=2", "parallel.vocab_parallel=true"});
  Trainer par(config(4, "vc", sets), world_.get());
  const auto lp = test::train_losses(par, kSteps);
  expect_like(par, lp, ref);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, VocabComposed,
    ::testing::Values(Composed{"dp2_zero1", {"parallel.dp=2", "parallel.zero_stage=1"}, 2},
                      Composed{"dp2_zero3", {"parallel.dp=2", "parallel.zero_stage=3"}, 2},
                      Composed{"sp2", {"parallel.sp=2"}, 1}),
    [](const auto& info) { return std::string(info.param.name); });

// The head over a real MPI group: each rank its rows of a 37-row vocabulary (padded), targets
// with ignored rows, against one rank holding everything.
class MpiVocabReduce final : public VocabReduce<float> {
 public:
  explicit MpiVocabReduce(Comm& c) : c_(c) {}
  void combine(VocabHeadPartial<float>& p) override {
    c_.iall_reduce_scaled_rows(p.data(), p.N(), p.row_len(), p.scaled()).wait();
  }

 private:
  Comm& c_;
};

// Operations this rank started while one of its vocabulary S all-reduces was in flight, from the
// flight recorder's JSON lines (records newer than `since` only).
int64_t started_during_s_reductions(double since) {
  struct Rec {
    std::string op;
    double start, end;
  };
  std::vector<Rec> recs;
  std::istringstream lines(Watchdog::instance().recorder().jsonl(0));
  const std::regex re(R"re("op":"([a-z_]+)".*"t_start":([0-9.]+),"t_end":([0-9.]+))re");
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re) && std::stod(m[2]) > since)
      recs.push_back({m[1], std::stod(m[2]), std::stod(m[3])});
  }
  int64_t n = 0;
  for (const Rec& r : recs)
    if (r.op == "iall_reduce_scaled_rows")
      for (const Rec& o : recs) n += o.start > r.start && o.start < r.end;
  return n;
}

// The S all-reduces overlap the transformer work of other micro-batches: with vocab_overlap
// some rank starts its pipeline messages (and other collectives) while one is in flight; with
// it off, none does (each is waited for where it is posted).
TEST_F(VocabParallel, SReductionsOverlapOtherMicroBatchesWork) {
  for (bool overlap : {false, true}) {
    SCOPED_TRACE(overlap);
    const double since = unix_seconds();
    Trainer par(config(4, overlap ? "ov1" : "ov0",
                       {kVocab, "parallel.pp=" + std::to_string(world_->size()),
                        "parallel.vocab_parallel=true",
                        std::string("parallel.vocab_overlap=") + (overlap ? "true" : "false")}),
                world_.get());
    test::train_losses(par, 2);
    int64_t n = started_during_s_reductions(since);
    world_->all_reduce_sum_int64(&n, 1);
    if (overlap)
      EXPECT_GT(n, 0);
    else
      EXPECT_EQ(n, 0);
  }
}

TEST_F(VocabParallel, HeadOverAnMpiGroupIgnoresMaskedTargets) {
  const int64_t V = 37, D = 8, N = 12, P = world_->size(), rows = vocab_shard_rows(V, P);
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> W(static_cast<size_t>(rows * P * D), 0.f), hn(static_cast<size_t>(N * D));
  for (int64_t i = 0; i < V * D; ++i) W[i] = nd(g);
  for (auto& x : hn) x = nd(g);
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) targets[n] = n % 4 == 1 ? -1 : static_cast<int32_t>(g() % V);
  targets[2] = V - 1;  // the last real row, next to the padding
  IdentityVocabReduce<float> one;
  std::vector<float> dh1(N * D), dW1(V * D, 0.f), dhp(N * D), dWp(rows * D, 0.f);
  const double l1 = vocab_head_loss(VocabShard<float>{W.data(), 0, V, V}, hn.data(), targets.data(),
                                    N, D, 0.1f, VocabTiles{5, 7}, dh1.data(), dW1.data(), one);
  MpiVocabReduce group(*world_);
  const int64_t row0 = world_->rank() * rows;
  const double lp =
      vocab_head_loss(VocabShard<float>{W.data() + row0 * D, row0, rows, V}, hn.data(),
                      targets.data(), N, D, 0.1f, VocabTiles{5, 7}, dhp.data(), dWp.data(), group);
  EXPECT_NEAR(lp, l1, 1e-5 * std::abs(l1));
  int64_t bad = 0;
  for (int64_t i = 0; i < N * D; ++i) bad += !(std::abs(dhp[i] - dh1[i]) <= 1e-5f);
  for (int64_t i = 0; i < rows * D && row0 * D + i < V * D; ++i)
    bad += !(std::abs(dWp[i] - dW1[row0 * D + i]) <= 1e-5f);
  for (int64_t r = 1; r < N; r += 4)
    for (int64_t d = 0; d < D; ++d) bad += dhp[r * D + d] != 0.f;  // ignored rows: no gradient
  EXPECT_EQ(bad, 0);
}

struct Resume {
  const char* name;
  int ranks;
  std::vector<std::string> sets;  // the resumed job's layout
};
class VocabResume : public VocabParallel, public ::testing::WithParamInterface<Resume> {};

// Trained 6 steps at pp 2 with the vocabulary split, resumed in another layout.
TEST_P(VocabResume, ContinuesUnderAnotherLayout) {
  const Resume& p = GetParam();
  if (p.ranks > world_->size()) GTEST_SKIP() << "needs " << p.ranks << " ranks";
  const Reference& ref = reference(4, 1, {kVocab});
  {
    auto sub = first_ranks(2);
    if (world_->rank() < 2) {
      Trainer a(config(4, "va", {kVocab, "parallel.pp=2", "parallel.vocab_parallel=true"}),
                sub.get());
      test::train_losses(a, 6);
      a.save_checkpoint();
    }
  }
  world_->barrier();
  auto sub = first_ranks(p.ranks);
  if (world_->rank() < p.ranks) {
    std::vector<std::string> sets = p.sets;
    sets.insert(sets.end(), {kVocab, "checkpoint.dir=" + dir_ + "/va/checkpoints"});
    Trainer b(config(4, "vb", sets), sub.get());
    EXPECT_TRUE(b.resume(dir_ + "/va/checkpoints"));
    expect_losses(test::train_losses(b, 6), ref.losses, 6);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, VocabResume,
    ::testing::Values(Resume{"one_process", 1, {}}, Resume{"pp2_off", 2, {"parallel.pp=2"}},
                      Resume{"pp4_on", 4, {"parallel.pp=4", "parallel.vocab_parallel=true"}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace strata
