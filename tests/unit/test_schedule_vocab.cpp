// add_vocab_passes (parallel/schedule_vocab.h): every generator's schedule gets the vocabulary
// passes, validates, lowers and runs to the end in the simulator, at the costs it was placed for
// and at others; the bubbles it leaves are the documented ones (docs/PIPELINE.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "input_error_util.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_sim.h"
#include "parallel/schedule_vocab.h"
#include "schedule_test_util.h"

namespace strata {
namespace {

using test::expect_input_error;

using test::kAllKinds;
using test::virtual_stages_for;

Schedule compute_only(ScheduleKind kind, int pp, int m) {
  return make_schedule(kind, pp, m, virtual_stages_for(kind));
}

// The list without its vocabulary passes.
std::vector<Action> without_vocab(const std::vector<Action>& actions) {
  std::vector<Action> out;
  std::copy_if(actions.begin(), actions.end(), std::back_inserter(out),
               [](const Action& a) { return !is_vocab(a.type); });
  return out;
}

int count(const std::vector<Action>& actions, ActionType type) {
  return static_cast<int>(std::count_if(actions.begin(), actions.end(),
                                        [&](const Action& a) { return a.type == type; }));
}

TEST(ScheduleVocab, EveryGeneratorGetsThePassesAndRunsToTheEnd) {
  SimCosts costs;
  costs.embed_f = costs.embed_b = 0.125;
  for (ScheduleKind kind : kAllKinds)
    for (int pp : {1, 2, 4})
      for (int m : {4, 8, 16}) {
        SCOPED_TRACE(std::string(schedule_kind_name(kind)) + " pp=" + std::to_string(pp) +
                     " m=" + std::to_string(m));
        const Schedule plain = compute_only(kind, pp, m);
        const Schedule s = add_vocab_passes(plain, costs);
        ASSERT_NO_THROW(validate_schedule(s));
        EXPECT_FALSE(is_lowered(s));
        for (int r = 0; r < pp; ++r) {
          EXPECT_EQ(without_vocab(s.ranks[r]), plain.ranks[r]) << "rank " << r;
          for (ActionType type :
               {ActionType::EMBED_F, ActionType::S, ActionType::T, ActionType::EMBED_B})
            EXPECT_EQ(count(s.ranks[r], type), m) << "rank " << r << " " << action_name(type);
        }
        const Schedule lowered = lower_schedule(s);
        ASSERT_NO_THROW(validate_schedule(lowered));
        const SimResult r = simulate_schedule(s, costs);
        const SimResult lowered_r = simulate_schedule(lowered, costs);
        EXPECT_DOUBLE_EQ(r.makespan, lowered_r.makespan);  // free messages change nothing
        EXPECT_GT(r.makespan, simulate_schedule(plain, costs).makespan);
        EXPECT_GE(r.bubble_fraction, 0);
        EXPECT_LT(r.bubble_fraction, 0.5);
        if (pp == 1) {
          EXPECT_DOUBLE_EQ(r.bubble_fraction, 0);  // all local: nothing waits
        }
      }
}

TEST(ScheduleVocab, ThePlacementCannotDeadlockAtOtherCostsEither) {
  // Progress is a property of the lists, not of the costs: placed at unit costs, run with
  // unequal stages, expensive collectives and message latency.
  SimCosts other;
  other.latency = 0.3;
  other.vocab_s = 1.5;
  other.vocab_t = 0.1;
  other.embed_f = 0.7;
  other.embed_b = 0.2;
  for (ScheduleKind kind : kAllKinds)
    for (int pp : {2, 4}) {
      const Schedule s = add_vocab_passes(compute_only(kind, pp, 8), SimCosts{});
      SimCosts uneven = other;
      for (int stage = 0; stage < s.stages; ++stage) {
        uneven.stage_forward.push_back(1 + 0.5 * (stage % 3));
        uneven.stage_backward.push_back(2 + (stage % 2));
        uneven.stage_backward_input.push_back(1 + 0.25 * stage);
        uneven.stage_backward_weight.push_back(0.5 + 0.1 * stage);
      }
      EXPECT_NO_THROW(simulate_schedule(lower_schedule(s), uneven))
          << schedule_kind_name(kind) << " pp=" << pp;
    }
}

TEST(ScheduleVocab, PlacedAtItsOwnCostsWithLatencyAndUnequalStages) {
  SimCosts costs;
  costs.latency = 0.25;
  costs.stage_forward = {1, 1.5, 1, 2};
  costs.stage_backward = {2, 3, 2, 4};
  costs.stage_backward_input = {1, 1.5, 1, 2.5};
  costs.stage_backward_weight = {1, 1.5, 1, 1.5};
  for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b, ScheduleKind::zb_h1}) {
    const Schedule s = add_vocab_passes(compute_only(kind, 4, 8), costs);
    EXPECT_NO_THROW(simulate_schedule(lower_schedule(s), costs)) << schedule_kind_name(kind);
  }
}

// pp = 4, default costs (F 1, B 2, I = W = 1, S = T = 0.25, EMBED_* 0, no latency): the step and
// bubble with the vocabulary passes, the table of docs/PIPELINE.md ("Vocabulary passes"). 1F1B
// with lead 1 is what a vocabulary-parallel job runs (launch/pipeline_plan.cpp): the last
// stage's S all-reduce overlaps its next forward instead of stalling it, and the step drops to
// GPipe's; lead 0 (each backward right after its forward) is the stall, for comparison.
TEST(ScheduleVocab, SimulatedBubblesAtPp4) {
  struct Row {
    ScheduleKind kind;
    int m, lead;
    double makespan, bubble;
  };
  const Row rows[] = {
      {ScheduleKind::gpipe, 4, 0, 22.75, 0.3846},
      {ScheduleKind::gpipe, 8, 0, 36.75, 0.2381},
      {ScheduleKind::gpipe, 16, 0, 64.75, 0.1351},
      {ScheduleKind::one_f_one_b, 4, 0, 25, 0.4400},
      {ScheduleKind::one_f_one_b, 8, 0, 42, 0.3333},
      {ScheduleKind::one_f_one_b, 16, 0, 76, 0.2632},
      {ScheduleKind::one_f_one_b, 4, 1, 22.75, 0.3846},
      {ScheduleKind::one_f_one_b, 8, 1, 36.75, 0.2381},
      {ScheduleKind::one_f_one_b, 16, 1, 64.75, 0.1351},
      {ScheduleKind::interleaved, 4, 0, 37, 0.2973},
      {ScheduleKind::interleaved, 8, 0, 66, 0.2121},
      {ScheduleKind::interleaved, 16, 0, 124, 0.1613},
      {ScheduleKind::zb_h1, 4, 0, 17, 0.1765},
      {ScheduleKind::zb_h1, 8, 0, 31, 0.0968},
      {ScheduleKind::zb_h1, 16, 0, 59, 0.0508},
  };
  for (const Row& row : rows) {
    const Schedule plain =
        make_schedule(row.kind, 4, row.m, virtual_stages_for(row.kind), row.lead);
    const SimResult r = simulate_schedule(add_vocab_passes(plain, {}));
    EXPECT_DOUBLE_EQ(r.makespan, row.makespan)
        << schedule_kind_name(row.kind) << " m=" << row.m << " lead=" << row.lead;
    EXPECT_NEAR(r.bubble_fraction, row.bubble, 5e-5)
        << schedule_kind_name(row.kind) << " m=" << row.m << " lead=" << row.lead;
  }
}

TEST(ScheduleVocab, ZbH1MeetsTheBoundOfItsStepPlusTheVocabularyWork) {
  // Every rank runs m x (S + T) more; ZB-H1 hides none of it and loses nothing to waiting.
  const SimCosts costs;
  for (int pp : {2, 4})
    for (int m : {4, 8, 16}) {
      const Schedule plain = make_zb_h1(pp, m);
      const double bound = simulate_schedule(plain).makespan + m * (costs.vocab_s + costs.vocab_t);
      EXPECT_DOUBLE_EQ(simulate_schedule(add_vocab_passes(plain, costs)).makespan, bound)
          << "pp=" << pp << " m=" << m;
    }
}

// Only vocabulary passes (another collective reached meanwhile, a T) between `a` and `b`.
bool adjacent_but_for_vocab(const std::vector<Action>& list, const Action& a, const Action& b) {
  const auto i = std::find(list.begin(), list.end(), a), j = std::find(list.begin(), list.end(), b);
  if (i == list.end() || j == list.end() || i >= j) return false;
  return std::all_of(i + 1, j, [](const Action& x) { return is_vocab(x.type); });
}

TEST(ScheduleVocab, EachCollectiveSitsOnItsAnchorWhereItsDataIs) {
  for (ScheduleKind kind : kAllKinds) {
    const Schedule s = add_vocab_passes(compute_only(kind, 4, 8), SimCosts{});
    const int last = s.stages - 1;
    for (int mb = 0; mb < 8; ++mb) {
      SCOPED_TRACE(std::string(schedule_kind_name(kind)) + " mb " + std::to_string(mb));
      const auto& r0 = s.ranks[0];
      const ActionType back = kind == ScheduleKind::zb_h1 ? ActionType::I : ActionType::B;
      EXPECT_TRUE(adjacent_but_for_vocab(r0, {ActionType::EMBED_F, 0, mb}, {ActionType::F, 0, mb}));
      EXPECT_TRUE(adjacent_but_for_vocab(r0, {back, 0, mb}, {ActionType::EMBED_B, 0, mb}));
      EXPECT_TRUE(
          adjacent_but_for_vocab(s.ranks[3], {ActionType::F, last, mb}, {ActionType::S, last, mb}));
    }
  }
}

TEST(ScheduleVocab, TheTableShowsThePassesAndTheBubble) {
  const Schedule s = lower_schedule(add_vocab_passes(make_1f1b(4, 8), SimCosts{}));
  const std::string table = format_schedule_table(s, simulate_schedule(s));
  for (const char* cell : {"0EMBED_F0", "3S0", "3T0", "0EMBED_B7", "bubble fraction 0.3333"})
    EXPECT_NE(table.find(cell), std::string::npos) << cell << "\n" << table;
}

TEST(ScheduleVocab, RefusesWhatItCannotPlace) {
  expect_input_error([] { add_vocab_passes(lower_schedule(make_1f1b(2, 4)), SimCosts{}); },
                     "before lowering");
  const Schedule placed = add_vocab_passes(make_1f1b(2, 4), SimCosts{});
  expect_input_error([&] { add_vocab_passes(placed, SimCosts{}); },
                     "already holds vocabulary passes");
  Schedule broken = make_1f1b(2, 4);
  std::swap(broken.ranks[1][0], broken.ranks[1][1]);  // 1B0 before 1F0
  expect_input_error([&] { add_vocab_passes(broken, SimCosts{}); }, "backward before its F");
}

}  // namespace
}  // namespace strata
