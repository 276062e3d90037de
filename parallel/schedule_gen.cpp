#include "parallel/schedule_gen.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace strata {
namespace {

Action compute(ActionType type, int stage, int micro_batch) {
  return Action{.type = type, .stage = stage, .micro_batch = micro_batch};
}

Schedule empty_schedule(int pp, int micro_batches, int virtual_stages) {
  if (pp < 1) throw InputError("pipeline schedule: pp must be >= 1, got " + std::to_string(pp));
  if (micro_batches < 1)
    throw InputError("pipeline schedule: micro-batches must be >= 1, got " +
                     std::to_string(micro_batches));
  Schedule schedule;
  schedule.pp = pp;
  schedule.stages = pp * virtual_stages;
  schedule.micro_batches = micro_batches;
  schedule.ranks.assign(pp, {});
  return schedule;
}

// 1F1B-family schedules keep pp-1-r forwards in flight ahead of the first backward on rank r;
// with fewer micro-batches than ranks the steady phase never starts and the schedule would only
// be a slower GPipe, so it is refused (as PyTorch's Schedule1F1B does).
void require_micro_batches_at_least_pp(std::string_view schedule, int pp, int micro_batches) {
  if (micro_batches < pp)
    throw InputError("pipeline schedule " + std::string(schedule) + " needs at least as many " +
                     "micro-batches as pipeline ranks: got " + std::to_string(micro_batches) +
                     " micro-batches for pp=" + std::to_string(pp));
}

}  // namespace

std::string_view schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::gpipe:
      return "gpipe";
    case ScheduleKind::one_f_one_b:
      return "1f1b";
    case ScheduleKind::interleaved:
      return "interleaved";
    case ScheduleKind::zb_h1:
      return "zb-h1";
  }
  STRATA_CHECK(false, "schedule kind without a name");
}

ScheduleKind parse_schedule_kind(std::string_view name) {
  for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b,
                            ScheduleKind::interleaved, ScheduleKind::zb_h1})
    if (schedule_kind_name(kind) == name) return kind;
  throw InputError("unknown pipeline schedule '" + std::string(name) +
                   "' (expected gpipe, 1f1b, interleaved or zb-h1)");
}

Schedule make_gpipe(int pp, int micro_batches) {
  Schedule schedule = empty_schedule(pp, micro_batches, 1);
  for (int rank = 0; rank < pp; ++rank) {
    for (int mb = 0; mb < micro_batches; ++mb)
      schedule.ranks[rank].push_back(compute(ActionType::F, rank, mb));
    for (int mb = 0; mb < micro_batches; ++mb)
      schedule.ranks[rank].push_back(compute(ActionType::B, rank, mb));
  }
  return schedule;
}

Schedule make_1f1b(int pp, int micro_batches, int lead) {
  require_micro_batches_at_least_pp("1f1b", pp, micro_batches);
  Schedule schedule = empty_schedule(pp, micro_batches, 1);
  for (int rank = 0; rank < pp; ++rank) {
    std::vector<Action>& actions = schedule.ranks[rank];
    const int warmup = std::min(pp - 1 - rank + lead, micro_batches);
    for (int mb = 0; mb < warmup; ++mb) actions.push_back(compute(ActionType::F, rank, mb));
    for (int k = 0; k < micro_batches - warmup; ++k) {
      actions.push_back(compute(ActionType::F, rank, warmup + k));
      actions.push_back(compute(ActionType::B, rank, k));
    }
    for (int mb = micro_batches - warmup; mb < micro_batches; ++mb)
      actions.push_back(compute(ActionType::B, rank, mb));
  }
  return schedule;
}

Schedule make_interleaved(int pp, int micro_batches, int virtual_stages) {
  if (virtual_stages < 2)
    throw InputError("pipeline schedule interleaved needs virtual_stages >= 2, got " +
                     std::to_string(virtual_stages) + " (use 1f1b for one stage per rank)");
  Schedule schedule = empty_schedule(pp, micro_batches, virtual_stages);
  if (micro_batches % pp != 0)
    throw InputError(
        "pipeline schedule interleaved needs the micro-batches to be a multiple of "
        "the pipeline ranks: got " +
        std::to_string(micro_batches) + " micro-batches for pp=" + std::to_string(pp));
  const int per_rank = micro_batches * virtual_stages;  // forwards (and backwards) on one rank
  const int round = pp * virtual_stages;  // a group of pp micro-batches through every chunk
  // The k-th forward on a rank: micro-batches go through a chunk pp at a time, chunk by chunk;
  // the k-th backward walks the chunks in reverse.
  auto micro_batch_of = [&](int k) { return (k / round) * pp + k % pp; };
  auto chunk_of = [&](int k) { return (k % round) / pp; };
  for (int rank = 0; rank < pp; ++rank) {
    std::vector<Action>& actions = schedule.ranks[rank];
    auto forward = [&](int k) {
      actions.push_back(compute(ActionType::F, chunk_of(k) * pp + rank, micro_batch_of(k)));
    };
    auto backward = [&](int k) {
      int chunk = virtual_stages - 1 - chunk_of(k);
      actions.push_back(compute(ActionType::B, chunk * pp + rank, micro_batch_of(k)));
    };
    // Megatron's warm-up: enough forwards that the first backward's gradient, which has to
    // pass every later rank of the last chunk, arrives while this rank is still busy.
    const int warmup = std::min((pp - rank - 1) * 2 + (virtual_stages - 1) * pp, per_rank);
    for (int k = 0; k < warmup; ++k) forward(k);
    for (int k = 0; k < per_rank - warmup; ++k) {
      forward(warmup + k);
      backward(k);
    }
    for (int k = per_rank - warmup; k < per_rank; ++k) backward(k);
  }
  return schedule;
}

Schedule make_zb_h1(int pp, int micro_batches, int lead) {
  require_micro_batches_at_least_pp("zb-h1", pp, micro_batches);
  Schedule schedule = empty_schedule(pp, micro_batches, 1);
  for (int rank = 0; rank < pp; ++rank) {
    std::vector<Action>& actions = schedule.ranks[rank];
    const int warmup = std::min(pp - 1 - rank + lead, micro_batches);
    const int w_lag = rank;  // W of micro-batch k runs after I of micro-batch k + w_lag
    int next_w = 0;
    auto input_grad_then_due_weight_grad = [&](int mb) {
      actions.push_back(compute(ActionType::I, rank, mb));
      if (mb - w_lag >= 0) actions.push_back(compute(ActionType::W, rank, next_w++));
    };
    for (int mb = 0; mb < warmup; ++mb) actions.push_back(compute(ActionType::F, rank, mb));
    for (int k = 0; k < micro_batches - warmup; ++k) {
      actions.push_back(compute(ActionType::F, rank, warmup + k));
      input_grad_then_due_weight_grad(k);
    }
    for (int mb = micro_batches - warmup; mb < micro_batches; ++mb)
      input_grad_then_due_weight_grad(mb);
    while (next_w < micro_batches) actions.push_back(compute(ActionType::W, rank, next_w++));
  }
  return schedule;
}

Schedule make_schedule(ScheduleKind kind, int pp, int micro_batches, int virtual_stages, int lead) {
  if (kind != ScheduleKind::interleaved && virtual_stages != 1)
    throw InputError("pipeline schedule " + std::string(schedule_kind_name(kind)) +
                     " holds one stage per rank: virtual_stages must be 1, got " +
                     std::to_string(virtual_stages));
  switch (kind) {
    case ScheduleKind::gpipe:
      return make_gpipe(pp, micro_batches);
    case ScheduleKind::one_f_one_b:
      return make_1f1b(pp, micro_batches, lead);
    case ScheduleKind::interleaved:
      return make_interleaved(pp, micro_batches, virtual_stages);
    case ScheduleKind::zb_h1:
      return make_zb_h1(pp, micro_batches, lead);
  }
  STRATA_CHECK(false, "unhandled schedule kind");
}

}  // namespace strata
