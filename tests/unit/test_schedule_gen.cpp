// Pipeline schedule generators, lowering and simulation (parallel/schedule_*.h): every generator
// validates and makes progress, and the simulated bubbles are the analytic ones.
#include <gtest/gtest.h>

#include <algorithm>

#include "input_error_util.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_sim.h"
#include "schedule_test_util.h"

namespace strata {
namespace {

using test::expect_input_error;

using test::kAllKinds;
using test::virtual_stages_for;

double bubble(ScheduleKind kind, int pp, int m) {
  return simulate_schedule(make_schedule(kind, pp, m, virtual_stages_for(kind))).bubble_fraction;
}

int max_peak(const SimResult& r) {
  return *std::max_element(r.peak_in_flight.begin(), r.peak_in_flight.end());
}

TEST(ScheduleGen, EveryGeneratorValidatesAndSimulatesBeforeAndAfterLowering) {
  for (ScheduleKind kind : kAllKinds)
    for (int pp : {2, 4})
      for (int m : {4, 8}) {
        SCOPED_TRACE(std::string(schedule_kind_name(kind)) + " pp=" + std::to_string(pp) +
                     " m=" + std::to_string(m));
        Schedule compute_only = make_schedule(kind, pp, m, virtual_stages_for(kind));
        EXPECT_EQ(compute_only.pp, pp);
        EXPECT_EQ(compute_only.stages, pp * virtual_stages_for(kind));
        EXPECT_FALSE(is_lowered(compute_only));
        EXPECT_NO_THROW(validate_schedule(compute_only));
        Schedule lowered = lower_schedule(compute_only);
        EXPECT_TRUE(is_lowered(lowered));
        EXPECT_NO_THROW(validate_schedule(lowered));
        SimResult plain = simulate_schedule(compute_only);
        SimResult with_messages = simulate_schedule(lowered);
        EXPECT_GT(plain.makespan, 0);
        // Zero-cost messages: lowering changes no start time of a compute action.
        EXPECT_DOUBLE_EQ(plain.makespan, with_messages.makespan);
        EXPECT_DOUBLE_EQ(plain.bubble_fraction, with_messages.bubble_fraction);
      }
}

TEST(ScheduleGen, GpipeAnd1f1bBubbleIsAnalytic) {
  for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b})
    for (int pp : {2, 4})
      for (int m : {4, 8, 16}) {
        double analytic = double(pp - 1) / (m + pp - 1);
        EXPECT_NEAR(bubble(kind, pp, m), analytic, 1e-12)
            << schedule_kind_name(kind) << " pp=" << pp << " m=" << m;
      }
}

TEST(ScheduleGen, InterleavedBubbleIsLowerAndShrinksWithVirtualStages) {
  for (int pp : {2, 4})
    for (int m : {4, 8, 16})
      for (int v : {2, 4}) {
        SimResult r = simulate_schedule(make_interleaved(pp, m, v));
        // Unit cost per virtual stage: the bubble of pp-1 stage slots over v*m of work.
        EXPECT_NEAR(r.bubble_fraction, double(pp - 1) / (v * m + pp - 1), 1e-12)
            << "pp=" << pp << " m=" << m << " v=" << v;
        EXPECT_LT(r.bubble_fraction, bubble(ScheduleKind::one_f_one_b, pp, m));
      }
}

TEST(ScheduleGen, ZbH1BubbleIsLowerThan1f1bAtTheSamePeakMemory) {
  for (int pp : {2, 4})
    for (int m : {4, 8, 16}) {
      SimResult zb = simulate_schedule(make_zb_h1(pp, m));
      SimResult one_f_one_b = simulate_schedule(make_1f1b(pp, m));
      EXPECT_LT(zb.bubble_fraction, one_f_one_b.bubble_fraction) << "pp=" << pp << " m=" << m;
      // F = I = W = 1: the bubble is (pp-1)*(T_F + T_B - T_W) = pp-1 per rank, a third of 1F1B's.
      EXPECT_NEAR(zb.bubble_fraction, double(pp - 1) / (3 * m + pp - 1), 1e-12);
      EXPECT_EQ(max_peak(zb), max_peak(one_f_one_b));
    }
}

TEST(ScheduleGen, ZbH1DefersWeightGradientsByTheRankAndStaysAheadOfOneFOneBAtOtherCosts) {
  Schedule s = make_zb_h1(4, 8);
  for (int rank = 0; rank < 4; ++rank) {
    const auto& actions = s.ranks[rank];
    auto first_w = std::find(actions.begin(), actions.end(), Action{ActionType::W, rank, 0});
    ASSERT_NE(first_w, actions.begin());
    EXPECT_EQ(*(first_w - 1), (Action{ActionType::I, rank, rank})) << "rank " << rank;
  }
  // A weight gradient cheaper than the input gradient, and message latency.
  SimCosts costs;
  costs.backward_input = 1.2;
  costs.backward_weight = 0.8;
  costs.latency = 0.25;
  for (int m : {4, 8, 16}) {
    SimResult zb = simulate_schedule(lower_schedule(make_zb_h1(4, m)), costs);
    SimResult one_f_one_b = simulate_schedule(lower_schedule(make_1f1b(4, m)), costs);
    EXPECT_LT(zb.makespan, one_f_one_b.makespan) << "m=" << m;
    EXPECT_LT(zb.bubble_fraction, one_f_one_b.bubble_fraction) << "m=" << m;
  }
}

TEST(ScheduleGen, PeakInFlightMicroBatches) {
  SimResult gpipe = simulate_schedule(make_gpipe(4, 8));
  SimResult one_f_one_b = simulate_schedule(make_1f1b(4, 8));
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_EQ(gpipe.peak_in_flight[rank], 8);               // every micro-batch at once
    EXPECT_EQ(one_f_one_b.peak_in_flight[rank], 4 - rank);  // pp - rank
  }
}

TEST(ScheduleGen, ALeadPutsEachBackwardThatManyForwardsLater) {
  for (int lead : {1, 2}) {
    SCOPED_TRACE(lead);
    const Schedule s = make_1f1b(4, 8, lead);
    EXPECT_NO_THROW(validate_schedule(lower_schedule(s)));
    const SimResult r = simulate_schedule(s);
    for (int rank = 0; rank < 4; ++rank) {
      EXPECT_EQ(r.peak_in_flight[rank], 4 - rank + lead);
      // The first backward comes after pp - 1 - rank + lead forwards.
      const auto& list = s.ranks[rank];
      const auto first_b = std::find_if(list.begin(), list.end(),
                                        [](const Action& a) { return a.type == ActionType::B; });
      EXPECT_EQ(first_b - list.begin(), 4 - rank + lead) << "rank " << rank;
    }
    EXPECT_NO_THROW(validate_schedule(lower_schedule(make_zb_h1(4, 8, lead))));
  }
  // Clamped to the micro-batches: every forward, then every backward (GPipe's order).
  EXPECT_EQ(make_1f1b(2, 2, 5).ranks, make_gpipe(2, 2).ranks);
}

TEST(ScheduleGen, OneRankIsForwardBackwardPerMicroBatch) {
  Schedule s = make_1f1b(1, 3);
  ASSERT_EQ(s.ranks.size(), 1u);
  std::vector<Action> expected;
  for (int mb = 0; mb < 3; ++mb) {
    expected.push_back({ActionType::F, 0, mb});
    expected.push_back({ActionType::B, 0, mb});
  }
  EXPECT_EQ(s.ranks[0], expected);
  Schedule lowered = lower_schedule(s);
  expected.push_back({ActionType::REDUCE_GRAD, 0, kNoMicroBatch});
  EXPECT_EQ(lowered.ranks[0], expected);  // nothing to send on one rank
  EXPECT_DOUBLE_EQ(simulate_schedule(lowered).bubble_fraction, 0);
  // Two virtual stages on one rank: their order on the rank is the dependency.
  EXPECT_NO_THROW(simulate_schedule(lower_schedule(make_interleaved(1, 2, 2))));
}

TEST(ScheduleGen, LoweringPlacesMessagesAroundTheirComputeAction) {
  Schedule lowered = lower_schedule(make_1f1b(2, 2));
  // rank 0: F0 SEND_F0 F1 SEND_F1 RECV_B0 B0 RECV_B1 B1 REDUCE_GRAD
  std::vector<Action> rank0 = {{ActionType::F, 0, 0},
                               {ActionType::SEND_F, 0, 0, 1},
                               {ActionType::F, 0, 1},
                               {ActionType::SEND_F, 0, 1, 1},
                               {ActionType::RECV_B, 0, 0, 1},
                               {ActionType::B, 0, 0},
                               {ActionType::RECV_B, 0, 1, 1},
                               {ActionType::B, 0, 1},
                               {ActionType::REDUCE_GRAD, 0, kNoMicroBatch}};
  EXPECT_EQ(lowered.ranks[0], rank0);
  EXPECT_EQ(lowered.ranks[1][0], (Action{ActionType::RECV_F, 1, 0, 0}));
  EXPECT_EQ(lowered.ranks[1][2], (Action{ActionType::B, 1, 0}));
  EXPECT_EQ(lowered.ranks[1][3], (Action{ActionType::SEND_B, 1, 0, 0}));
  expect_input_error([&] { lower_schedule(lowered); }, "already lowered");
}

TEST(ScheduleGen, LatencyCostsTheSameLoweredOrNot) {
  SimCosts costs;
  costs.latency = 0.5;
  for (ScheduleKind kind : kAllKinds) {
    Schedule s = make_schedule(kind, 4, 8, virtual_stages_for(kind));
    SimResult plain = simulate_schedule(s, costs);
    EXPECT_DOUBLE_EQ(plain.makespan, simulate_schedule(lower_schedule(s), costs).makespan);
    EXPECT_GT(plain.makespan, simulate_schedule(s).makespan) << schedule_kind_name(kind);
  }
}

TEST(ScheduleGen, MicroBatchCountsThatCannotBeServedNameBothNumbers) {
  expect_input_error([] { make_1f1b(4, 3); }, "got 3 micro-batches for pp=4");
  expect_input_error([] { make_zb_h1(4, 2); }, "got 2 micro-batches for pp=4");
  expect_input_error([] { make_interleaved(4, 6, 2); }, "got 6 micro-batches for pp=4");
  expect_input_error([] { make_interleaved(4, 8, 1); }, "virtual_stages >= 2");
  expect_input_error([] { make_schedule(ScheduleKind::zb_h1, 2, 4, 2); },
                     "virtual_stages must be 1");
  expect_input_error([] { make_gpipe(0, 4); }, "pp must be >= 1");
  expect_input_error([] { make_gpipe(2, 0); }, "micro-batches must be >= 1");
  expect_input_error([] { parse_schedule_kind("2f2b"); },
                     "expected gpipe, 1f1b, interleaved or zb-h1");
  EXPECT_NO_THROW(simulate_schedule(make_gpipe(4, 1)));  // GPipe serves any count
}

TEST(ScheduleGen, KindNamesRoundTrip) {
  for (ScheduleKind kind : kAllKinds)
    EXPECT_EQ(parse_schedule_kind(schedule_kind_name(kind)), kind);
}

TEST(ScheduleGen, TableShowsEveryRankTheStepTimeAndTheBubble) {
  Schedule s = lower_schedule(make_1f1b(4, 4));
  SimResult r = simulate_schedule(s);
  std::string table = format_schedule_table(s, r);
  EXPECT_NE(table.find("rank 3"), std::string::npos) << table;
  EXPECT_NE(table.find("step time 21"), std::string::npos) << table;
  EXPECT_NE(table.find("bubble fraction 0.4286"), std::string::npos) << table;
  for (const auto& actions : s.ranks)
    for (const Action& a : actions)
      EXPECT_NE(table.find(format_action(a)), std::string::npos) << format_action(a);
  // The first row is time 0: only rank 0 starts.
  EXPECT_NE(table.find("\n0    | 0F0 "), std::string::npos) << table;
}

}  // namespace
}  // namespace strata
