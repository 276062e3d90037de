#include "launch/activation_setup.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/log.h"
#include "offload/tier_probe.h"

namespace strata {

ActivationSetup make_activation_store(const JobConfig& cfg, int rank) {
  const OffloadConfig& o = cfg.offload;
  const int64_t L = cfg.model.n_layers;
  const bool automatic = o.policy == "auto";
  ActivationSetup setup;
  std::unique_ptr<SwapTier> tier;
  if (automatic || o.policy == "swap") {
    SwapOptions so;
    so.tier = parse_swap_tier(o.tier);
    so.dir = o.dir;
    so.capacity_bytes = o.capacity_gb << 30;
    so.cxl_node = o.cxl_node;
    so.rank = rank;
    so.io.queue_depth = static_cast<int>(o.queue_depth);
    so.io.block_size = o.block_kb << 10;
    so.checksums = o.checksums;
    tier = SwapTier::create(so);
    const std::string where =
        std::string(tier->name()) + (tier->path().empty() ? "" : " file " + tier->path());
    if (automatic) {
      // The planner's estimate of what swaps hide is only as good as these two numbers.
      const int64_t probe = std::min<int64_t>(64 << 20, tier->capacity() / 2);
      setup.bandwidth = probe_tier_bandwidth(*tier, probe, std::min<int64_t>(8 << 20, probe / 2));
      tier->trim();
      MemoryTracker::instance().reset_peaks();  // the probe's buffers are not the run's
      log_info("activations: auto; swap tier " + where + " measured " +
               std::to_string(static_cast<int>(setup.bandwidth.write_bytes_per_s / 1e6)) +
               " MB/s write, " +
               std::to_string(static_cast<int>(setup.bandwidth.read_bytes_per_s / 1e6)) +
               " MB/s read; step 1 recomputes every block and measures them");
    } else {
      log_info("activations: swap to " + where + " (capacity " + format_bytes(tier->capacity()) +
               "), last " + std::to_string(std::min(o.keep_last, L)) + " block(s) kept in memory");
    }
  }
  const ActivationPolicy initial =
      automatic ? ActivationPolicy::recompute : parse_activation_policy(o.policy);
  setup.store = std::make_unique<ActivationStore>(L, initial, "x", std::move(tier));
  setup.store->set_writes_in_flight(o.writes_in_flight);
  setup.plan_after_first_step = automatic;
  // The last blocks' backward comes first, right after their forward: swapping them out would
  // only read them straight back.
  if (initial == ActivationPolicy::swap)
    for (int64_t b = std::max<int64_t>(0, L - o.keep_last); b < L; ++b)
      setup.store->set_policy(b, ActivationPolicy::keep);
  return setup;
}

ActivationPlan plan_activation_policies(const JobConfig& cfg, ActivationStore& store,
                                        const TierBandwidth& bw, const MemorySnapshot& first_step,
                                        const PlanScope& scope) {
  std::vector<int64_t> blocks = scope.blocks;
  if (blocks.empty())
    for (int64_t b = 0; b < store.n_blocks(); ++b) blocks.push_back(b);
  PlanInput in;
  for (int64_t b : blocks) {
    const BlockMeasure& m = store.measures()[static_cast<size_t>(b)];
    in.blocks.push_back({m.saved_bytes, m.input_bytes, m.forward_s, m.backward_s});
  }
  in.bw = bw;
  in.writes_in_flight = cfg.offload.writes_in_flight;
  std::string budget_from;
  if (cfg.offload.budget_mb > 0) {
    in.budget_bytes = cfg.offload.budget_mb << 20;
    budget_from = "offload.budget_mb";
  } else {
    // What the cap leaves for saved sets: the other categories at their first-step peaks, and
    // the step's activations that are not saved sets (residual stream, head logits, backward
    // scratch: the first step's activation peak less what recompute held at most).
    const int64_t cap = cfg.train.max_memory_mb << 20;
    int64_t others = 0;
    for (int c = 0; c < kNumMemCategories; ++c)
      if (c != static_cast<int>(MemCategory::activations)) others += first_step.peak[c];
    int64_t held = 0, largest = 0;
    for (const BlockProfile& b : in.blocks) {
      held += b.input_bytes;
      largest = std::max(largest, b.saved_bytes);
    }
    const int64_t scratch = std::max<int64_t>(
        0, first_step.peak[static_cast<int>(MemCategory::activations)] - held - largest);
    in.budget_bytes = std::max<int64_t>(0, cap - others - scratch);
    budget_from = "train.max_memory_mb (" + format_bytes(cap) + ") less " + format_bytes(others) +
                  " of other memory and " + format_bytes(scratch) + " of activation scratch";
  }
  const int in_flight = std::max(1, scope.in_flight);
  if (in_flight > 1) {
    in.budget_bytes /= in_flight;
    budget_from += ", shared by the " + std::to_string(in_flight) +
                   " micro-batches the pipeline schedule holds at once";
  }
  ActivationPlan plan = plan_activations(in);
  const std::string which = scope.blocks.empty()
                                ? ""
                                : " (this rank's blocks " + std::to_string(blocks.front()) + "-" +
                                      std::to_string(blocks.back()) + ", numbered from 0)";
  if (!plan.fits)
    throw StrataError("offload.policy auto: no plan fits the activation budget of " +
                      format_bytes(in.budget_bytes) + " from " + budget_from +
                      "; the least memory is " + plan.summary() + which +
                      ". Raise the budget, shorten data.seq_len or train.micro_batch, or split "
                      "the sequence over more ranks (parallel.sp)");
  for (size_t i = 0; i < blocks.size(); ++i) store.set_policy(blocks[i], plan.policy[i]);
  log_info("activations: auto plan from step 1 (budget from " + budget_from +
           "): " + plan.summary() + which);
  return plan;
}

}  // namespace strata
