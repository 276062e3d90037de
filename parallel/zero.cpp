#include "parallel/zero.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "optim/grad_norm.h"

namespace strata {

namespace {
struct PendingReduce {
  int64_t unit = 0;
  CommHandle handle;
  FloatBuffer scratch;  // reduce-scatter result to accumulate (stages 2-3)
};
}  // namespace

struct ZeroEngine::State {
  std::vector<FloatBuffer> shard_params;  // stage 3: [shard] owned parameters
  std::vector<FloatBuffer> shard_grads;   // stages 2-3: [shard] reduced gradients
  std::vector<CommHandle> gathers;        // stage 3: all-gather in flight per unit
  std::vector<PendingReduce> reductions;  // gradient reductions in flight
};

ZeroEngine::ZeroEngine(Comm& dp, int stage, std::vector<ZeroUnit> units,
                       const std::string& optimizer, const OptimizerOptions& options)
    : dp_(dp), stage_(stage), units_(std::move(units)), s_(std::make_unique<State>()) {
  if (stage_ < 0 || stage_ > 3)
    throw InputError("parallel.zero_stage: expected 0, 1, 2 or 3, got " + std::to_string(stage_));
  const size_t U = units_.size();
  s_->shard_params.resize(U);
  s_->shard_grads.resize(U);
  s_->gathers.resize(U);
  for (size_t u = 0; u < U; ++u) {
    ZeroUnit& z = units_[u];
    const int64_t padded = shard(static_cast<int64_t>(u)) * dp_.size();
    const ShardRange own = owned(static_cast<int64_t>(u));
    // Full parameters, padded so that every rank's shard has the same length.
    FloatBuffer full(padded, MemCategory::params);
    std::memcpy(full.data(), z.params->data(), sizeof(float) * z.numel);
    if (stage_ == 3) {
      s_->shard_params[u] = FloatBuffer(shard(static_cast<int64_t>(u)), MemCategory::params);
      std::memcpy(s_->shard_params[u].data(), full.data() + own.begin, sizeof(float) * own.size());
      z.params->reset();
    } else {
      *z.params = std::move(full);
    }
    if (stage_ <= 1)
      *z.grads = FloatBuffer(padded, MemCategory::grads);
    else
      z.grads->reset();
    // Stage 1 reduces into its own slice of the full gradient; stages 2-3 keep only the shard.
    if (stage_ >= 2)
      s_->shard_grads[u] = FloatBuffer(shard(static_cast<int64_t>(u)), MemCategory::grads);
    optimizers_.push_back(
        make_optimizer(optimizer, optimizer_range(static_cast<int64_t>(u)).size(), options));
  }
}

ZeroEngine::~ZeroEngine() {
  // Requests in flight reference buffers owned here: finish them before anything is freed. A
  // wait that fails (the watchdog abandoned the communicator, and the process is on its way
  // out) is logged: a destructor that throws while an exception unwinds is std::terminate.
  auto finish = [](CommHandle& h) {
    try {
      h.wait();
    } catch (const std::exception& e) {
      log_warn(std::string("ZeRO: a request in flight at shutdown failed: ") + e.what());
    }
  };
  for (auto& h : s_->gathers) finish(h);
  for (auto& r : s_->reductions) finish(r.handle);
}

int64_t ZeroEngine::shard(int64_t u) const {
  const int64_t n = units_[static_cast<size_t>(u)].numel, p = dp_.size();
  return std::max<int64_t>(1, (n + p - 1) / p);
}

ShardRange ZeroEngine::owned(int64_t u) const {
  const int64_t n = units_[static_cast<size_t>(u)].numel, s = shard(u);
  const int64_t b = std::min(n, s * dp_.rank()), e = std::min(n, b + s);
  return {b, e};
}

ShardRange ZeroEngine::optimizer_range(int64_t u) const {
  return stage_ == 0 ? ShardRange{0, units_[static_cast<size_t>(u)].numel} : owned(u);
}

const float* ZeroEngine::owned_params(int64_t u) const {
  if (stage_ == 3) return s_->shard_params[static_cast<size_t>(u)].data();
  return units_[static_cast<size_t>(u)].params->data() + owned(u).begin;
}

float* ZeroEngine::owned_params_mut(int64_t u) { return const_cast<float*>(owned_params(u)); }

// ---- stage 3 parameter gathering ------------------------------------------------------------

void ZeroEngine::gather(int64_t u, bool prefetch) {
  if (stage_ != 3 || u < 0 || u >= num_units()) return;
  ZeroUnit& z = units_[static_cast<size_t>(u)];
  if (z.params->size() > 0) {  // already gathered or in flight
    if (!prefetch) wait_gather(u);
    return;
  }
  const int64_t s = shard(u);
  *z.params = FloatBuffer(s * dp_.size(), MemCategory::params);
  s_->gathers[static_cast<size_t>(u)] =
      dp_.iall_gather(s_->shard_params[static_cast<size_t>(u)].data(), z.params->data(), s);
  if (!prefetch) wait_gather(u);
}

void ZeroEngine::wait_gather(int64_t u) { s_->gathers[static_cast<size_t>(u)].wait(); }

void ZeroEngine::release_params(int64_t u) {
  ZeroUnit& z = units_[static_cast<size_t>(u)];
  if (stage_ != 3 || z.pinned) return;
  wait_gather(u);
  z.params->reset();
}

// ---- gradients --------------------------------------------------------------------------------

void ZeroEngine::ensure_full_grads(int64_t u) {
  ZeroUnit& z = units_[static_cast<size_t>(u)];
  if (stage_ >= 2 && z.grads->size() == 0)
    *z.grads = FloatBuffer(shard(u) * dp_.size(), MemCategory::grads);
}

void ZeroEngine::reduce_grads(int64_t u) {
  ZeroUnit& z = units_[static_cast<size_t>(u)];
  const int64_t s = shard(u);
  PendingReduce r;
  r.unit = u;
  if (stage_ == 0) {
    if (!last_micro_) return;  // accumulate locally; one all-reduce per step
    r.handle = dp_.iall_reduce_sum(z.grads->data(), s * dp_.size());
  } else {
    if (stage_ == 1 && !last_micro_) return;  // stage 1 accumulates locally like stage 0
    r.scratch = FloatBuffer(s, MemCategory::comm);
    r.handle = dp_.ireduce_scatter_sum(z.grads->data(), r.scratch.data(), s);
  }
  s_->reductions.push_back(std::move(r));
}

void ZeroEngine::drain_reductions(size_t keep) {
  auto& pending = s_->reductions;
  const size_t done = pending.size() > keep ? pending.size() - keep : 0;
  for (size_t i = 0; i < done; ++i) {
    PendingReduce& r = pending[i];
    r.handle.wait();
    ZeroUnit& z = units_[static_cast<size_t>(r.unit)];
    const float* part = r.scratch.data();
    if (stage_ == 1) {  // the reduced shard goes into this rank's slice of the full gradient
      const ShardRange own = owned(r.unit);
      std::memcpy(z.grads->data() + own.begin, part, sizeof(float) * own.size());
    } else if (stage_ >= 2) {
      float* acc = s_->shard_grads[static_cast<size_t>(r.unit)].data();
      const int64_t s = r.scratch.size();
      for (int64_t j = 0; j < s; ++j) acc[j] += part[j];
      z.grads->reset();  // the full gradient is gone
    }
  }
  pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(done));
}

void ZeroEngine::progress() {
  for (auto& r : s_->reductions) r.handle.test();
  for (auto& h : s_->gathers) h.test();
}

void ZeroEngine::begin_micro_batch(bool last) {
  last_micro_ = last;
  // A pinned unit's gradient is written by two units' backward passes (the tied embedding by
  // the head and by the embedding): it must exist for the whole micro-batch.
  for (int64_t u = 0; u < num_units(); ++u)
    if (units_[static_cast<size_t>(u)].pinned) ensure_full_grads(u);
}

void ZeroEngine::end_micro_batch() { drain_reductions(); }

// ---- hooks ------------------------------------------------------------------------------------

void ZeroEngine::before_forward(int64_t u) {
  progress();
  gather(u, false);
  gather(u + 1, true);  // prefetch the next unit while this one computes
}

void ZeroEngine::after_forward(int64_t u) {
  // In training the head's forward runs straight into its backward (no after_forward).
  release_params(u);
}

void ZeroEngine::before_backward(int64_t u) {
  progress();
  gather(u, false);
  gather(u - 1, true);
  ensure_full_grads(u);
}

void ZeroEngine::after_backward(int64_t u) {
  reduce_grads(u);
  drain_reductions(/*keep=*/1);
  release_params(u);
}

// ---- optimizer step ---------------------------------------------------------------------------

double ZeroEngine::grad_sq_norm() {
  drain_reductions();
  double sq = 0;
  for (int64_t u = 0; u < num_units(); ++u) {
    const ShardRange own = owned(u);
    const float* g = stage_ <= 1 ? units_[static_cast<size_t>(u)].grads->data() + own.begin
                                 : s_->shard_grads[static_cast<size_t>(u)].data();
    sq += sum_of_squares(g, own.size());
  }
  dp_.all_reduce_sum_double(&sq, 1);
  return sq;
}

void ZeroEngine::step(float lr, float clip) {
  drain_reductions();
  for (int64_t u = 0; u < num_units(); ++u) {
    ZeroUnit& z = units_[static_cast<size_t>(u)];
    const ShardRange r = optimizer_range(u);
    float* g =
        stage_ <= 1 ? z.grads->data() + r.begin : s_->shard_grads[static_cast<size_t>(u)].data();
    float* p =
        stage_ == 3 ? s_->shard_params[static_cast<size_t>(u)].data() : z.params->data() + r.begin;
    if (clip < 1.f) scale(g, r.size(), clip);
    optimizers_[static_cast<size_t>(u)]->step(p, g, r.size(),
                                              clip_segments(z.segments, r.begin, r.end), lr);
  }
  // Re-assemble full parameters from the updated shards, all units in flight together.
  if (stage_ == 1 || stage_ == 2) {
    std::vector<CommHandle> hs;
    for (int64_t u = 0; u < num_units(); ++u) {
      const int64_t s = shard(u);
      float* full = units_[static_cast<size_t>(u)].params->data();
      hs.push_back(dp_.iall_gather(full + s * dp_.rank(), full, s));
    }
    for (auto& h : hs) h.wait();
  }
  clear_grads();
}

void ZeroEngine::skip_step() {
  drain_reductions();
  clear_grads();
}

void ZeroEngine::clear_grads() {
  for (int64_t u = 0; u < num_units(); ++u) {
    ZeroUnit& z = units_[static_cast<size_t>(u)];
    if (stage_ <= 1)
      z.grads->zero();
    else
      z.grads->reset();
    if (stage_ >= 2) s_->shard_grads[static_cast<size_t>(u)].zero();
    if (stage_ == 3 && z.pinned) {  // stale after the update: gathered again on next use
      wait_gather(u);
      z.params->reset();
    }
  }
}

}  // namespace strata
