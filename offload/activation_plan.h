#pragma once
// The `auto` activation policy: picks keep / recompute / swap per block from measured block
// profiles, an activation memory budget and the swap tier's bandwidth. Pure logic (no I/O, no
// clock), deterministic: the same input gives the same plan.
//
// Rule of thumb it implements: keep the last blocks, swap what the I/O can hide, recompute the
// rest. The last blocks run their backward first, right after their forward, so swapping them
// would read straight back with nothing to hide behind; the first blocks have the whole
// remaining forward to hide their writes behind; recompute costs a second forward.
//
// Memory model (bytes of saved sets held at once; upper bound, exact for the store's order):
//   resident(b) = saved_bytes (keep), input_bytes (recompute), 0 (swap: the write takes the set
//                 out of activation memory at once; in flight, the tier charges it to io)
//   transient(i) = saved_i                            the full set block i's backward consumes
//                + input_i        if i is recompute    (the kept input while the set is rebuilt)
//                + saved_{i-1}    if i-1 is swap       (block i-1's set being prefetched into it)
//   peak = max over i of [ sum_{j<i} resident(j) + transient(i) ]
// Forward peaks (blocks before i resident, block i's full set being built) are below the same
// block's backward term, so the backward terms alone give the peak. All keep: peak = sum saved.
//
// Time model (one micro-batch; the head and everything but the blocks take no time):
//   forward  blocks 0..L-1 back to back; a swapped block's write is queued at the end of its
//            forward on one serial I/O device (writes at write bandwidth, reads at read bandwidth,
//            first come first served); each block's save first waits until at most
//            writes_in_flight - 1 earlier sets are still being written (ActivationStore's bound),
//            and that wait is exposed I/O too;
//   backward blocks L-1..0; block i's read is queued halfway through block i+1's backward (after
//            its rebuild if recomputed; at the start of the backward for block L-1), where
//            Model::forward_backward prefetches as the backward frees memory; block i's backward
//            waits for its read: the wait is exposed I/O. A recomputed block runs its forward again
//            first (recompute time).
//   cost = exposed I/O + recompute time; the I/O allowance = hide_fraction x the step's compute
//   (sum of forward_s + backward_s).
//
// Search: candidates are every split "the last k blocks keep" (k = 0..L) with, for the others,
// (a) the first s swap and the rest recompute (s = 0..L-k), and (b) a greedy pass from block 0 up
// that turns each recompute into swap when that lowers (or keeps) the cost and the total exposed
// I/O stays within the allowance. The candidates do not depend on the budget; the plan is the
// best candidate that fits: lowest cost within the allowance; ties go to more kept blocks, then
// to the lower peak. Only when no candidate within the allowance fits, the cheapest fitting one
// over it (the summary says so). When none fits at all: the lowest-peak candidate, fits = false.
// Because the candidates are fixed, a larger budget never gives a costlier plan (as long as the
// smaller budget's plan was within the allowance).
#include <cstdint>
#include <string>
#include <vector>

#include "offload/activation_store.h"

namespace strata {

struct BlockProfile {       // measured for one block (one micro-batch)
  int64_t saved_bytes = 0;  // everything the block saves under keep
  int64_t input_bytes = 0;  // what recompute keeps (the block input)
  double forward_s = 0;     // forward compute time
  double backward_s = 0;    // backward compute time (without any recompute)
};

struct TierBandwidth {
  double write_bytes_per_s = 0, read_bytes_per_s = 0;
};

struct PlanInput {
  std::vector<BlockProfile> blocks;
  int64_t budget_bytes = 0;      // activation memory allowed for saved sets (held at once)
  TierBandwidth bw;              // of the swap tier; 0 = no tier (never swap)
  double hide_fraction = 0.05;   // swaps may add at most this fraction of the step's compute
                                 // time in exposed I/O, in total
  int64_t writes_in_flight = 1;  // offload.writes_in_flight (>= 1)
};

struct ActivationPlan {
  std::vector<ActivationPolicy> policy;  // per block
  int64_t peak_bytes = 0;                // estimated peak of saved-set memory (model above)
  double exposed_io_s = 0;               // estimated I/O time not hidden behind compute
  double recompute_s = 0;                // estimated extra forward time
  bool fits = true;                      // false when even the cheapest plan exceeds the budget
  int64_t budget_bytes = 0;              // the input's, for summary()
  double io_allowance_s = 0;             // hide_fraction x step compute; exposed_io_s may exceed
                                         // it only when nothing within it fits
  // "blocks 0-3 swap, 4-5 recompute, 6-7 keep; est. peak 130.2MiB of 512.0MiB budget, exposed
  // I/O 3.1 ms, recompute 0 ms"
  std::string summary() const;
};

ActivationPlan plan_activations(const PlanInput& in);

// The memory and time models above for a given policy (budget and allowance copied from `in`,
// fits = peak <= budget): what plan_activations scores its candidates with.
ActivationPlan evaluate_plan(const PlanInput& in, const std::vector<ActivationPolicy>& policy);

}  // namespace strata
