#pragma once
// ZeRO data parallelism (Rajbhandari et al., 2020) over flat per-unit buffers.
//
// Every unit (embedding, block, head) is one flat fp32 buffer of n elements, padded to
// dp * shard elements (shard = ceil(n / dp)); data-parallel rank r owns [r*shard, (r+1)*shard).
//   stage 0: full params, grads and optimizer states everywhere; grads all-reduced.
//   stage 1: optimizer states (the fp32 master state) only for the owned shard; grads
//            reduce-scattered into the rank's slice of the full gradient, the updated shard
//            all-gathered back into params.
//   stage 2: as 1, and the full gradient of a unit lives only while its backward runs: it is
//            reduce-scattered right after (overlapping the next unit's backward) and freed.
//   stage 3: as 2, and params are sharded too: a unit is all-gathered just before its forward
//            or backward (the next one prefetched while this one computes) and freed after.
// Communication per step, in all-reduce units Ψ: stages 0-2 move Ψ (all-reduce = reduce-scatter
// + all-gather), stage 3 1.5Ψ (two all-gathers of params + a reduce-scatter of grads).
//
// The engine knows nothing of the model: it sees units as (params, grads) FloatBuffer slots it
// may replace, named by the model's unit index (`id`), and the trainer forwards the model's
// unit-pass hooks to it. It never assumes an order of units or micro-batches: a pipeline
// schedule decides what runs when, and the caller says which pass over a unit is its last in
// the step (so its reduction starts right after it, overlapping what follows).
//
// Gradient reduction: stages 0-1 accumulate the full gradient locally and reduce once per step.
// Stages 2-3 reduce after every micro-batch's backward of a unit (the full gradient lives only
// while one unit's backward runs), unless `reduce_once_per_step` (pipeline parallelism: a stage
// holds 1/pp of the units, and m reduce-scatters per unit and step would cost m times the bytes),
// where the full gradients of the stage's units live from their first backward to the step's
// end and each is reduce-scattered once.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/memory.h"
#include "core/unit_pass.h"
#include "optim/optimizer.h"
#include "parallel/comm.h"

namespace strata {

struct ZeroUnit {
  int64_t id = 0;                 // the model's unit index (what the hooks name)
  FloatBuffer* params = nullptr;  // the model's slot; the engine installs the buffer it uses
  FloatBuffer* grads = nullptr;
  int64_t numel = 0;
  std::vector<DecaySegment> segments;  // weight-decay layout over [0, numel)
  bool pinned = false;  // keep params/grads whole for the whole step (tied embedding)
  // A copy of a unit another pipeline stage owns (the tied embedding on the last stage): its
  // reduced gradient is summed with the owner's over `tie` before the norm and the update, so
  // both apply the same update; it is left out of the norm (counted once, by the owner).
  bool replica = false;
  Comm* tie = nullptr;  // owner + replicas of a tied unit (same dp/sp index); nullptr = none
  // Called when stage 3 frees the unit's gathered parameters: what is derived from them (the
  // bf16 copy of the bf16 precision) goes with them, so it is never resident unsharded.
  std::function<void()> on_release = nullptr;
  // The bf16 precision's copy of the parameters, when one is held (nullptr otherwise): a step
  // that updates the unit whole on this rank (stages 0-2 with one data-parallel rank, or stage
  // 0) has the optimizer write it as it updates (Optimizer::set_bf16_copy), then calls
  // bf16_rewritten after the epoch bump so it is not cast again.
  std::function<bf16*()> bf16_copy = nullptr;
  std::function<void()> bf16_rewritten = nullptr;
};

struct ZeroOptions {
  bool reduce_once_per_step = false;  // stages 2-3: see above
};

struct ShardRange {
  int64_t begin = 0, end = 0;  // owned elements of the unit, clipped to numel
  int64_t size() const { return end - begin; }
};

class ZeroEngine {
 public:
  // `params` in each unit hold the full initial values (identical on every rank); the engine
  // keeps what its stage needs. The optimizer is built per unit over the range it updates.
  ZeroEngine(Comm& dp, int stage, std::vector<ZeroUnit> units, const std::string& optimizer,
             const OptimizerOptions& options, ZeroOptions zero_options = {});
  ~ZeroEngine();

  int stage() const { return stage_; }
  // Units are numbered 0..num_units() here (slots), in the order given; unit_id names the model
  // unit of a slot, slot_of the slot of a model unit (-1: not held by this rank).
  int64_t num_units() const { return static_cast<int64_t>(units_.size()); }
  int64_t unit_id(int64_t slot) const { return units_[static_cast<size_t>(slot)].id; }
  int64_t slot_of(int64_t id) const;
  const ZeroUnit& unit(int64_t slot) const { return units_[static_cast<size_t>(slot)]; }
  // Elements of unit u this rank owns (checkpoints, optimizer state) and the optimizer of it.
  ShardRange owned(int64_t u) const;
  // The elements the optimizer of unit u covers: the owned range (stages 1-3) or all (stage 0).
  ShardRange optimizer_range(int64_t u) const;
  Optimizer& optimizer(int64_t u) { return *optimizers_[static_cast<size_t>(u)]; }
  // This rank's current parameter values of unit u for elements [r.begin, r.end) of the
  // optimizer range (stage 3: the shard buffer; otherwise the full buffer).
  const float* owned_params(int64_t u) const;
  float* owned_params_mut(int64_t u);

  // Before a step's first pass (pinned units get their whole-step gradient).
  void begin_step();
  // Around a pass over model unit `id` (ignored for units this rank does not hold). `last`:
  // no later pass of this step writes the unit's gradient, so its reduction may start.
  void before(int64_t id, UnitPass pass);
  void after(int64_t id, UnitPass pass, bool last);
  // Stage 3: start gathering `id` (its pass comes next).
  void prefetch(int64_t id);
  // Starts the reductions not started yet (units whose last pass was not flagged, replicas).
  void finish_grads();
  // The same for the held units of model units [first_id, end_id) (one pipeline stage's).
  void finish_grads(int64_t first_id, int64_t end_id);

  // After the last micro-batch: finishes and waits for reductions, sums tied units over their
  // tie groups, then returns the sum of squared gradients over this rank's units (summed over
  // dp for the caller; the caller sums over pipeline stages).
  double grad_sq_norm();
  // Scales gradients by `clip`, runs the optimizer on this rank's range at `lr`, re-assembles
  // parameters (stages 1-2: all-gather) and clears gradients.
  void step(float lr, float clip);
  // Drops this step's gradients without an update (a non-finite loss or gradient norm under
  // train.on_nonfinite: skip); parameters and optimizer states stay as they were.
  void skip_step();

 private:
  struct State;
  void gather(int64_t u, bool prefetch);
  void wait_gather(int64_t u);
  void release_params(int64_t u);
  void ensure_full_grads(int64_t u);
  // After a step: zero (stages 0-1) or free (2-3) the gradients, but for the units the step
  // left zeroed (zeroed[u], when given).
  void clear_grads(const std::vector<bool>& zeroed);
  void reduce_grads(int64_t u);
  bool reduces_each_micro_batch(int64_t u) const;
  void sum_tied_grads();
  // Completes reductions in flight, all but the newest `keep` (so a unit's reduction overlaps the
  // next unit's backward while at most keep+1 full gradients are alive).
  void drain_reductions(size_t keep = 0);
  // Polls every request in flight: MPI advances nonblocking collectives only inside MPI calls,
  // so each unit boundary gives the reductions and prefetches running behind compute a push.
  void progress();
  int64_t shard(int64_t u) const;

  Comm& dp_;
  int stage_;
  std::vector<ZeroUnit> units_;
  std::vector<std::unique_ptr<Optimizer>> optimizers_;
  std::unique_ptr<State> s_;
  ZeroOptions options_;
  std::vector<int64_t> slot_of_id_;
  std::vector<bool> dirty_;  // per slot: gradient written since its last reduction
};

}  // namespace strata
