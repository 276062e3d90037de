#pragma once
// `strata plan`: what every rank of a job will hold, predicted without training. The step is
// replayed on a Ledger (launch/memory_ledger.h): the rank's pipeline actions in the order the
// lowered schedule runs them, each pass allocating and freeing what the trainer's code does
// (ZeRO shards, gathers and reductions, saved activations under the offload policy, pipeline
// and vocabulary-pass messages, swap writes). The peaks are per category, as MemoryTracker
// reports them for a step, and the communication is counted per mesh axis under comm_stats.h's
// byte convention. launch/memory_estimate.h's refusal of jobs that cannot fit is a lower bound;
// this is the prediction (tests/e2e/plan.sh holds it within 10% of `strata train`).
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/memory.h"
#include "launch/job_config.h"

namespace strata {

struct RankMemoryPlan {
  int rank = 0, pp_rank = 0, dp_rank = 0, sp_rank = 0;
  std::array<double, kNumMemCategories> peak{};  // bytes, per category (a step's peaks)
  double total_peak = 0;                         // of the sum: what train.max_memory_mb caps
  // offload.policy swap with offload.writes_in_flight > 1: io (the writes in flight) and so the
  // total depend on the device's speed. peak[io] and total_peak are for a device that keeps up
  // with the forward (one block's set in flight); these for one that does not (that many sets
  // in flight). The same as peak[io] and total_peak otherwise: with one set in flight, and
  // pipeline sends released where the schedule proves them received
  // (parallel/send_release.h), a rank's memory does not depend on timing.
  double io_slow = 0, total_slow = 0;
  std::map<std::string, double> comm_bytes;  // per axis ("dp", "sp", "pp", ...) per step
};

struct MemoryPlan {
  std::vector<RankMemoryPlan> ranks;  // every rank of the layout, by world rank
  double cap_bytes = 0;               // train.max_memory_mb (0: none)
  // The rank with the largest total peak (the slow device's).
  const RankMemoryPlan& largest() const;
  // Against the slow device's total: a job that fits only when the swap device keeps up does
  // not fit.
  bool fits() const { return cap_bytes <= 0 || largest().total_slow <= cap_bytes; }
};

// InputError (exit 2) for a layout the trainer would refuse (plan_pipeline's checks, seq_len
// not divisible by sp).
MemoryPlan plan_memory(const JobConfig& cfg);

// --world N: the job's pp and sp kept, dp = N / (pp * sp). InputError when N is not a multiple
// of pp * sp, or the global batch does not split over the new dp.
void set_plan_world(JobConfig& cfg, int64_t world);

// The table per rank, the communication per axis and the verdict; when the job does not fit,
// the category that overflows and the layouts that would (memory_plan_advice.cpp).
std::string format_memory_plan(const MemoryPlan& plan, const JobConfig& cfg);
std::string memory_plan_json(const MemoryPlan& plan);
// "" when the plan fits; else the message `strata plan` exits 2 with.
std::string memory_plan_overflow(const MemoryPlan& plan, const JobConfig& cfg);

}  // namespace strata
