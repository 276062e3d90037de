#include "launch/memory_plan.h"

#include <algorithm>

#include "core/error.h"
#include "launch/memory_plan_step.h"
#include "launch/pipeline_plan.h"
#include "models/model.h"

namespace strata {

namespace {

// The units pipeline rank r holds, as Trainer::build_stages decides: its stages' units, every
// rank's rows of the embedding and the LM head under the vocabulary split, the tied
// embedding's copy on the last stage.
std::vector<bool> held_units(const JobConfig& c, const PipelinePlan& plan, int r, int64_t U) {
  const bool tied = c.model.tie_embeddings, vocab = c.parallel.vocab_parallel;
  const int64_t head = c.model.n_layers + 1;
  std::vector<bool> held(static_cast<size_t>(U), false);
  for (int s : plan.stages_of_rank(r))
    for (int64_t u = plan.stages[s].first_unit; u < plan.stages[s].end_unit; ++u)
      held[static_cast<size_t>(u)] = true;
  if (vocab) {
    held.front() = true;
    if (!tied) held.back() = true;
  }
  if (tied && !vocab && held[static_cast<size_t>(head)]) held.front() = true;
  return held;
}

RankMemoryPlan plan_rank(const JobConfig& c, const PipelinePlan& plan, int rank) {
  const ParallelConfig& p = c.parallel;
  RankMemoryPlan out;
  out.rank = rank;
  out.sp_rank = static_cast<int>(rank % p.sp);
  out.dp_rank = static_cast<int>((rank / p.sp) % p.dp);
  out.pp_rank = static_cast<int>(rank / (p.sp * p.dp));
  const bool vocab = p.vocab_parallel, tied = c.model.tie_embeddings;
  const int64_t U = c.model.n_layers + 2 + (vocab && !tied ? 1 : 0);
  VocabSplit split;
  if (vocab) split = VocabSplit{true, out.pp_rank, static_cast<int>(plan.pp)};
  const Model layout(c.model, std::vector<bool>(static_cast<size_t>(U), false), split);
  const std::vector<bool> held = held_units(c, plan, out.pp_rank, U);
  const bool bf16 = train_precision(c.train) == Precision::bf16;
  const int64_t output = tied ? 0 : (vocab ? c.model.n_layers + 2 : c.model.n_layers + 1);
  std::vector<ZeroReplayUnit> units;
  for (int64_t u = 0; u < U; ++u) {
    if (!held[static_cast<size_t>(u)]) continue;
    const bool gemms = (u >= 1 && u <= c.model.n_layers) || u == output;
    const bool pinned = tied && !vocab && u == 0 && held[static_cast<size_t>(c.model.n_layers + 1)];
    units.push_back({u, layout.units()[static_cast<size_t>(u)].numel(), bf16 && gemms, pinned});
  }
  const std::string replica_axis = p.sp > 1 ? "dp*sp" : "dp";
  // The replay with the swap writes landing as soon as they can, then as late as the bound on
  // writes in flight lets them. The two ends differ only with more than one set in flight: then
  // alone is the second replay run.
  const bool ranged = c.offload.policy == "swap" && c.offload.writes_in_flight > 1;
  for (const bool slow : {false, true}) {
    if (slow && !ranged) {
      out.io_slow = out.peak[static_cast<int>(MemCategory::io)];
      out.total_slow = out.total_peak;
      continue;
    }
    Ledger ledger;
    std::map<std::string, double> comm;
    ZeroReplay zero(ledger, static_cast<int>(p.zero_stage), p.dp * p.sp,
                    out.dp_rank * p.sp + out.sp_rank, c.optim.name == "adamw", plan.pp > 1, units,
                    &comm[replica_axis]);
    ledger.reset_peaks();  // a step's peaks start from what is resident (MemoryTracker per step)
    StepReplay step(StepReplayContext{&c, &plan, out.pp_rank, static_cast<int>(p.sp), &ledger,
                                      &zero, &comm, slow, out.sp_rank});
    step.run();
    comm[replica_axis] += 16;               // the loss sum's all-reduce
    if (plan.pp > 1) comm["pp"] += 8 + 16;  // the loss broadcast, the norm's sum
    zero.finish_step();
    if (slow) {
      out.io_slow = ledger.peak(MemCategory::io);
      out.total_slow = ledger.total_peak();
      continue;
    }
    out.comm_bytes = std::move(comm);
    for (int k = 0; k < kNumMemCategories; ++k)
      out.peak[k] = ledger.peak(static_cast<MemCategory>(k));
    out.total_peak = ledger.total_peak();
  }
  return out;
}

}  // namespace

const RankMemoryPlan& MemoryPlan::largest() const {
  return *std::max_element(ranks.begin(), ranks.end(), [](const auto& a, const auto& b) {
    return a.total_slow < b.total_slow;
  });
}

MemoryPlan plan_memory(const JobConfig& cfg) {
  const PipelinePlan plan = plan_pipeline(cfg);  // InputError for a layout it cannot serve
  if (cfg.data.seq_len % cfg.parallel.sp != 0)
    throw InputError(cfg.source + ": data.seq_len (" + std::to_string(cfg.data.seq_len) +
                     ") must be divisible by parallel.sp (" + std::to_string(cfg.parallel.sp) +
                     "): each sequence-parallel rank takes an equal contiguous chunk");
  MemoryPlan out;
  out.cap_bytes = static_cast<double>(cfg.train.max_memory_mb) * 1024 * 1024;
  const int64_t world = cfg.parallel.pp * cfg.parallel.dp * cfg.parallel.sp;
  for (int r = 0; r < world; ++r) out.ranks.push_back(plan_rank(cfg, plan, r));
  return out;
}

void set_plan_world(JobConfig& cfg, int64_t world) {
  ParallelConfig& p = cfg.parallel;
  if (world < 1 || world % (p.pp * p.sp) != 0)
    throw InputError("strata plan: --world " + std::to_string(world) +
                     " is not a multiple of parallel.pp * parallel.sp (" +
                     std::to_string(p.pp * p.sp) + ")");
  p.dp = world / (p.pp * p.sp);
  if (cfg.train.global_batch % (p.dp * cfg.train.micro_batch) != 0)
    throw InputError("strata plan: --world " + std::to_string(world) + " gives parallel.dp = " +
                     std::to_string(p.dp) + ", which does not split train.global_batch (" +
                     std::to_string(cfg.train.global_batch) + ") into micro-batches of " +
                     std::to_string(cfg.train.micro_batch));
}

}  // namespace strata
