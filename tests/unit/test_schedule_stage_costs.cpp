// The simulator's optional per-stage costs (SimCosts::stage_*): a stage's own F/B/I/W time,
// the scalars' behaviour when they are absent.
#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_sim.h"

namespace strata {
namespace {

TEST(ScheduleStageCosts, EachStageRunsAtItsOwnCost) {
  // GPipe, pp = 2, one micro-batch: 0F0 (1), 1F0 (3), 1B0 (6), 0B0 (2) in a chain.
  SimCosts costs;
  costs.stage_forward = {1, 3};
  costs.stage_backward = {2, 6};
  const SimResult r = simulate_schedule(lower_schedule(make_gpipe(2, 1)), costs);
  EXPECT_DOUBLE_EQ(r.makespan, 12);
  EXPECT_DOUBLE_EQ(r.busy[0], 3);
  EXPECT_DOUBLE_EQ(r.busy[1], 9);
}

TEST(ScheduleStageCosts, EqualPerStageCostsAreTheScalarOnes) {
  for (ScheduleKind kind : {ScheduleKind::one_f_one_b, ScheduleKind::zb_h1}) {
    const Schedule s = lower_schedule(make_schedule(kind, 4, 8, 1));
    SimCosts per_stage;
    per_stage.stage_forward.assign(4, 1);
    per_stage.stage_backward.assign(4, 2);
    per_stage.stage_backward_input.assign(4, 1);
    per_stage.stage_backward_weight.assign(4, 1);
    per_stage.forward = per_stage.backward = 100;  // ignored where a vector is given
    per_stage.backward_input = per_stage.backward_weight = 100;
    const SimResult a = simulate_schedule(s, per_stage), b = simulate_schedule(s);
    EXPECT_DOUBLE_EQ(a.makespan, b.makespan) << schedule_kind_name(kind);
    EXPECT_EQ(a.start, b.start) << schedule_kind_name(kind);
  }
}

TEST(ScheduleStageCosts, TheSlowestStageBoundsTheStep) {
  // 1F1B, pp = 4, m = 8 with stage 2 twice as slow: the step holds at least stage 2's work
  // (8 x (2 + 4)), the forwards of stages 0-1 before its first action and the backwards of
  // stages 1-0 after its last (2 + 4).
  const Schedule s = lower_schedule(make_1f1b(4, 8));
  SimCosts slow;
  slow.stage_forward = {1, 1, 2, 1};
  slow.stage_backward = {2, 2, 4, 2};
  const SimResult r = simulate_schedule(s, slow);
  EXPECT_GE(r.makespan, 8 * 6 + 2 + 4);
  EXPECT_DOUBLE_EQ(r.busy[2], 48);
  EXPECT_DOUBLE_EQ(r.busy[1], 24);
  EXPECT_GT(r.makespan, simulate_schedule(s).makespan);
}

TEST(ScheduleStageCosts, AVectorOfTheWrongLengthIsABug) {
  SimCosts costs;
  costs.stage_forward = {1, 1, 1};
  EXPECT_THROW(simulate_schedule(make_1f1b(2, 2), costs), StrataError);
}

}  // namespace
}  // namespace strata
