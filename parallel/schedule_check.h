#pragma once
// Lowering and validation of pipeline schedules (parallel/schedule.h, docs/PIPELINE.md).
#include <string>

#include "core/error.h"
#include "parallel/schedule.h"

namespace strata {

// A violated schedule rule. rank/index locate the offending action (-1 when the rule is about
// the schedule as a whole), so a loader can map them back to a file line.
class ScheduleRuleError : public InputError {
 public:
  ScheduleRuleError(const std::string& what, int rank, int index)
      : InputError(what), rank_(rank), index_(index) {}
  int rank() const { return rank_; }
  int index() const { return index_; }

 private:
  int rank_;
  int index_;
};

// Inserts the point-to-point actions and REDUCE_GRAD into a compute-only schedule:
//   - SEND_F right after F(s, mb) and SEND_B right after B/I(s, mb) when the neighbouring stage
//     lives on another rank: a send never waits, so posting it as soon as its data exists lets
//     the consumer start as early as the dependency allows;
//   - RECV_F right before F(s, mb) and RECV_B right before B/I(s, mb): the action marks where
//     the rank needs the data, i.e. where the executor waits; the executor posts the matching
//     nonblocking receive earlier (it knows the list), so placing the wait any earlier would
//     only add false dependencies (a rank blocked on a gradient while it could run forwards);
//   - REDUCE_GRAD(s) right after the last B or W of stage s on its rank.
// Vocabulary passes (S, T, EMBED_F, EMBED_B) stay where they are and get no messages: their
// collectives carry the data. No REDUCE_GRAD is added for the vocabulary shards (they belong to
// no stage): the executor flags the rank's last T and EMBED_B, and the runner reduces the
// shards from there (docs/PIPELINE.md, "Vocabulary passes").
// InputError if the schedule is already lowered. Validate the result with validate_schedule.
Schedule lower_schedule(const Schedule& compute_only);

// Throws ScheduleRuleError naming the rank, the action index and the rule when the schedule
// breaks one (docs/PIPELINE.md lists them): placement and ranges, no duplicate, every (stage,
// micro-batch) with exactly one F and one backward (B, or I and W), F before its backward and I
// before W, same-rank stage order, and — for a lowered schedule — every cross-rank dependency
// through a receive placed before its consumer, every send matched by exactly one receive, and one
// REDUCE_GRAD per stage after its last backward; the vocabulary passes' rules
// (parallel/schedule_vocab_check.h) after the stages' own. Progress (no deadlock across ranks) is
// the simulator's proof (parallel/schedule_sim.h).
void validate_schedule(const Schedule& schedule);

}  // namespace strata
