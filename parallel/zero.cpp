#include "parallel/zero.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "core/weights_epoch.h"
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
                       const std::string& optimizer, const OptimizerOptions& options,
                       ZeroOptions zero_options)
    : dp_(dp),
      stage_(stage),
      units_(std::move(units)),
      s_(std::make_unique<State>()),
      options_(zero_options) {
  if (stage_ < 0 || stage_ > 3)
    throw InputError("parallel.zero_stage: expected 0, 1, 2 or 3, got " + std::to_string(stage_));
  const size_t U = units_.size();
  dirty_.assign(U, false);
  for (size_t u = 0; u < U; ++u) {
    const int64_t id = units_[u].id;
    STRATA_CHECK(id >= 0, "a ZeRO unit without a model unit index");
    if (id >= static_cast<int64_t>(slot_of_id_.size()))
      slot_of_id_.resize(static_cast<size_t>(id) + 1, -1);
    STRATA_CHECK(slot_of_id_[static_cast<size_t>(id)] < 0, "a model unit given to ZeRO twice");
    slot_of_id_[static_cast<size_t>(id)] = static_cast<int64_t>(u);
  }
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

int64_t ZeroEngine::slot_of(int64_t id) const {
  return id >= 0 && id < static_cast<int64_t>(slot_of_id_.size())
             ? slot_of_id_[static_cast<size_t>(id)]
             : -1;
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
  if (z.on_release) z.on_release();
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
  dirty_[static_cast<size_t>(u)] = false;
  if (stage_ == 0) {
    r.handle = dp_.iall_reduce_sum(z.grads->data(), s * dp_.size());
  } else {
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

bool ZeroEngine::reduces_each_micro_batch(int64_t u) const {
  // A pinned unit's gradient is written by two units' passes (the tied embedding by the head
  // and by the embedding): it is reduced once, when both are done.
  return stage_ >= 2 && !options_.reduce_once_per_step && !units_[static_cast<size_t>(u)].pinned;
}

void ZeroEngine::begin_step() {
  for (int64_t u = 0; u < num_units(); ++u)
    if (units_[static_cast<size_t>(u)].pinned) {
      ensure_full_grads(u);
      dirty_[static_cast<size_t>(u)] = true;  // the head writes it without a pass of its own
    }
}

void ZeroEngine::finish_grads() {
  for (int64_t u = 0; u < num_units(); ++u)
    if (dirty_[static_cast<size_t>(u)]) reduce_grads(u);
}

void ZeroEngine::finish_grads(int64_t first_id, int64_t end_id) {
  for (int64_t id = first_id; id < end_id; ++id) {
    const int64_t u = slot_of(id);
    if (u >= 0 && dirty_[static_cast<size_t>(u)]) reduce_grads(u);
  }
}

// ---- hooks ------------------------------------------------------------------------------------

void ZeroEngine::prefetch(int64_t id) {
  const int64_t u = slot_of(id);
  if (u >= 0) gather(u, true);
}

void ZeroEngine::before(int64_t id, UnitPass pass) {
  const int64_t u = slot_of(id);
  if (u < 0) return;
  progress();
  if (pass != UnitPass::backward_weight) gather(u, false);  // W needs no parameters
  if (pass == UnitPass::forward) return;
  ensure_full_grads(u);
  dirty_[static_cast<size_t>(u)] = true;
}

void ZeroEngine::after(int64_t id, UnitPass pass, bool last) {
  const int64_t u = slot_of(id);
  if (u < 0) return;
  if (pass == UnitPass::forward || pass == UnitPass::backward_input) {
    release_params(u);  // I's gradient is finished by W: nothing to reduce yet
    return;
  }
  if (last || reduces_each_micro_batch(u)) {
    reduce_grads(u);
    drain_reductions(/*keep=*/1);
  }
  if (pass == UnitPass::backward) release_params(u);
}

// ---- optimizer step ---------------------------------------------------------------------------

void ZeroEngine::sum_tied_grads() {
  for (int64_t u = 0; u < num_units(); ++u) {
    ZeroUnit& z = units_[static_cast<size_t>(u)];
    if (!z.tie) continue;
    const ShardRange r = optimizer_range(u);
    float* g =
        stage_ <= 1 ? z.grads->data() + r.begin : s_->shard_grads[static_cast<size_t>(u)].data();
    z.tie->all_reduce_sum(g, r.size());
  }
}

double ZeroEngine::grad_sq_norm() {
  finish_grads();
  drain_reductions();
  sum_tied_grads();
  double sq = 0;
  for (int64_t u = 0; u < num_units(); ++u) {
    if (units_[static_cast<size_t>(u)].replica) continue;  // counted by its owner
    const ShardRange own = owned(u);
    const float* g = stage_ <= 1 ? units_[static_cast<size_t>(u)].grads->data() + own.begin
                                 : s_->shard_grads[static_cast<size_t>(u)].data();
    sq += sum_of_squares(g, own.size());
  }
  dp_.all_reduce_sum_double(&sq, 1);
  return sq;
}

void ZeroEngine::step(float lr, float clip) {
  finish_grads();
  drain_reductions();
  std::vector<int64_t> rewritten;  // units whose bf16 copy the optimizer wrote
  std::vector<bool> cleared(static_cast<size_t>(num_units()));  // ... whose gradients it zeroed
  for (int64_t u = 0; u < num_units(); ++u) {
    ZeroUnit& z = units_[static_cast<size_t>(u)];
    const ShardRange r = optimizer_range(u);
    float* g =
        stage_ <= 1 ? z.grads->data() + r.begin : s_->shard_grads[static_cast<size_t>(u)].data();
    float* p =
        stage_ == 3 ? s_->shard_params[static_cast<size_t>(u)].data() : z.params->data() + r.begin;
    // Updated whole here (no shard of it arrives from another rank): the copy follows the update.
    bf16* copy = stage_ != 3 && r.size() == z.numel && z.bf16_copy ? z.bf16_copy() : nullptr;
    if (copy) rewritten.push_back(u);
    optimizers_[static_cast<size_t>(u)]->set_bf16_copy(copy);
    // Read whole here (stages 0 and 1 on the full buffer): the step leaves them zeroed.
    cleared[static_cast<size_t>(u)] = stage_ <= 1 && r.size() == z.numel;
    if (cleared[static_cast<size_t>(u)]) optimizers_[static_cast<size_t>(u)]->set_grads_to_clear(g);
    optimizers_[static_cast<size_t>(u)]->step(
        p, g, r.size(), clip_segments(z.segments, r.begin, r.end), lr,
        clip < 1.f ? clip : 1.f);  // a NaN coefficient (a non-finite norm) scales nothing
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
  bump_weights_epoch();  // derived copies (bf16 weights) are stale now, but for those rewritten
  for (int64_t u : rewritten) units_[static_cast<size_t>(u)].bf16_rewritten();
  clear_grads(cleared);
}

void ZeroEngine::skip_step() {
  finish_grads();  // every rank runs the same reductions, so the groups stay matched
  drain_reductions();
  clear_grads({});
}

void ZeroEngine::clear_grads(const std::vector<bool>& zeroed) {
  for (int64_t u = 0; u < num_units(); ++u) {
    ZeroUnit& z = units_[static_cast<size_t>(u)];
    dirty_[static_cast<size_t>(u)] = false;
    const bool done = static_cast<size_t>(u) < zeroed.size() && zeroed[static_cast<size_t>(u)];
    if (stage_ >= 2)
      z.grads->reset();
    else if (!done)
      z.grads->zero();
    if (stage_ >= 2) s_->shard_grads[static_cast<size_t>(u)].zero();
    if (stage_ == 3 && z.pinned) {  // stale after the update: gathered again on next use
      wait_gather(u);
      z.params->reset();
      if (z.on_release) z.on_release();
    }
  }
}

}  // namespace strata
