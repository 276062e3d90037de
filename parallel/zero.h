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
// may replace, and the trainer forwards the model's block-boundary hooks to it.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/memory.h"
#include "optim/optimizer.h"
#include "parallel/comm.h"

namespace strata {

struct ZeroUnit {
  FloatBuffer* params = nullptr;  // the model's slot; the engine installs the buffer it uses
  FloatBuffer* grads = nullptr;
  int64_t numel = 0;
  std::vector<DecaySegment> segments;  // weight-decay layout over [0, numel)
  bool pinned = false;  // keep params/grads whole for the whole step (tied embedding)
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
             const OptimizerOptions& options);
  ~ZeroEngine();

  int stage() const { return stage_; }
  int64_t num_units() const { return static_cast<int64_t>(units_.size()); }
  // Elements of unit u this rank owns (checkpoints, optimizer state) and the optimizer of it.
  ShardRange owned(int64_t u) const;
  // The elements the optimizer of unit u covers: the owned range (stages 1-3) or all (stage 0).
  ShardRange optimizer_range(int64_t u) const;
  Optimizer& optimizer(int64_t u) { return *optimizers_[static_cast<size_t>(u)]; }
  // This rank's current parameter values of unit u for elements [r.begin, r.end) of the
  // optimizer range (stage 3: the shard buffer; otherwise the full buffer).
  const float* owned_params(int64_t u) const;
  float* owned_params_mut(int64_t u);

  // Micro-batch bracket: gradient reduction happens after the last micro-batch's backward of
  // each unit (stages 0-1: accumulate locally first) or after every one (stages 2-3, whose
  // full gradients do not outlive the unit's backward).
  void begin_micro_batch(bool last);
  void end_micro_batch();

  // Hooks at unit boundaries (called by the model through the trainer).
  void before_forward(int64_t u);
  void after_forward(int64_t u);
  void before_backward(int64_t u);
  void after_backward(int64_t u);

  // After the last micro-batch: waits for reductions, then returns this rank's partial sum of
  // squared gradients over what it owns (already summed over dp for the caller).
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
  void clear_grads();  // after a step: zero (stages 0-1) or free (2-3) the gradients
  void reduce_grads(int64_t u);
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
  bool last_micro_ = true;
};

}  // namespace strata
