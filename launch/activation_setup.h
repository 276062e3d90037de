#pragma once
// The trainer's side of offload: builds the ActivationStore the job file asks for and, under
// offload.policy: auto, turns the first step's measurements into a per-block plan.
#include <memory>
#include <vector>

#include "core/memory.h"
#include "launch/job_config.h"
#include "offload/activation_plan.h"
#include "offload/activation_store.h"

namespace strata {

struct ActivationSetup {
  std::unique_ptr<ActivationStore> store;
  bool plan_after_first_step = false;  // auto: the first step runs recompute and measures
  TierBandwidth bandwidth;             // auto: measured on the tier at start
};

// The store for cfg.offload (tier created, keep_last applied; under auto every block recomputes
// until plan_activation_policies() runs, and the tier's bandwidth is probed once). `rank` names
// the swap file.
ActivationSetup make_activation_store(const JobConfig& cfg, int rank);

// auto: the activation budget (offload.budget_mb, or what train.max_memory_mb leaves after the
// other categories and the step's transient activations, from the first step's peaks), the
// plan from the store's measurements, applied to the store and logged. Throws StrataError
// naming offload.budget_mb / train.max_memory_mb when even recomputing every block does not fit.
// With pipeline stages the plan covers this rank's `blocks` only (empty: every block), and the
// budget is shared by the `in_flight` micro-batches whose sets the schedule holds at once
// (the simulator's peak for this rank), so each gets budget / in_flight.
struct PlanScope {
  std::vector<int64_t> blocks;
  int in_flight = 1;
};
ActivationPlan plan_activation_policies(const JobConfig& cfg, ActivationStore& store,
                                        const TierBandwidth& bw, const MemorySnapshot& first_step,
                                        const PlanScope& scope = {});

}  // namespace strata
