#include "launch/memory_plan_zero.h"

#include <algorithm>

namespace strata {

ZeroReplay::ZeroReplay(Ledger& l, int stage, int64_t replicas, int64_t index, bool adamw,
                       bool reduce_once_per_step, std::vector<ZeroReplayUnit> units,
                       double* axis_bytes)
    : l_(l),
      stage_(stage),
      replicas_(replicas),
      reduce_once_(reduce_once_per_step),
      bytes_(axis_bytes) {
  for (const ZeroReplayUnit& u : units) {
    Slot s;
    s.u = u;
    s.shard = std::max<int64_t>(1, (u.numel + replicas - 1) / replicas);
    // The owned range, clipped to the unit: the optimizer's (stages 1-3).
    const int64_t b = std::min(u.numel, s.shard * index), e = std::min(u.numel, b + s.shard);
    const double range = static_cast<double>(stage == 0 ? u.numel : e - b);
    const double shard_bytes = static_cast<double>(s.shard) * 4;
    l_.alloc(MemCategory::params, stage == 3 ? shard_bytes : padded(s));
    l_.alloc(MemCategory::grads, stage <= 1 ? padded(s) : shard_bytes);
    l_.alloc(MemCategory::optimizer, (adamw ? 2 : 1) * range * 4);
    // Below stage 3 the bf16 copy is made on the first step and kept (re-cast after updates).
    if (stage < 3 && u.bf16_copy)
      s.bf16 =
          l_.alloc(MemCategory::params, Ledger::floats(static_cast<double>((u.numel + 1) / 2)));
    slots_.push_back(s);
  }
}

ZeroReplay::Slot* ZeroReplay::slot(int64_t id) {
  for (Slot& s : slots_)
    if (s.u.id == id) return &s;
  return nullptr;
}

void ZeroReplay::gather(Slot& s) {
  if (stage_ != 3 || s.full_params != Ledger::kNone) return;
  s.full_params = l_.alloc(MemCategory::params, padded(s));
  *bytes_ += padded(s);
}

void ZeroReplay::release(Slot& s) {
  if (stage_ != 3 || s.u.pinned) return;
  l_.free(s.full_params);
  l_.free(s.bf16);
}

void ZeroReplay::prefetch(int64_t id) {
  if (Slot* s = slot(id)) gather(*s);
}

void ZeroReplay::before(int64_t id, UnitPass pass) {
  Slot* s = slot(id);
  if (!s) return;
  if (pass != UnitPass::backward_weight) gather(*s);
  // Stage 3: the bf16 copy is cast from the gathered parameters by the pass's first GEMM.
  if (stage_ == 3 && s->u.bf16_copy && pass != UnitPass::backward_weight &&
      s->bf16 == Ledger::kNone)
    s->bf16 =
        l_.alloc(MemCategory::params, Ledger::floats(static_cast<double>((s->u.numel + 1) / 2)));
  if (pass == UnitPass::forward) return;
  if (stage_ >= 2 && s->full_grads == Ledger::kNone)
    s->full_grads = l_.alloc(MemCategory::grads, padded(*s));
  s->dirty = true;
}

void ZeroReplay::after(int64_t id, UnitPass pass, bool last) {
  Slot* s = slot(id);
  if (!s) return;
  if (pass == UnitPass::forward || pass == UnitPass::backward_input) {
    release(*s);
    return;
  }
  const bool each = stage_ >= 2 && !reduce_once_ && !s->u.pinned;
  if (last || each) {
    reduce(s - slots_.data());
    drain(1);
  }
  if (pass == UnitPass::backward) release(*s);
}

void ZeroReplay::reduce(int64_t k) {
  Slot& s = slots_[static_cast<size_t>(k)];
  s.dirty = false;
  Pending p{k, Ledger::kNone};
  if (stage_ == 0) {
    *bytes_ += 2 * padded(s);  // all-reduce
  } else {
    p.scratch = l_.alloc(MemCategory::comm, static_cast<double>(s.shard) * 4);
    *bytes_ += padded(s);  // reduce-scatter
  }
  pending_.push_back(p);
}

void ZeroReplay::drain(size_t keep) {
  while (pending_.size() > keep) {
    Pending& p = pending_.front();
    l_.free(p.scratch);
    if (stage_ >= 2) l_.free(slots_[static_cast<size_t>(p.slot)].full_grads);
    pending_.erase(pending_.begin());
  }
}

void ZeroReplay::finish_grads(int64_t first, int64_t end) {
  for (size_t k = 0; k < slots_.size(); ++k)
    if (slots_[k].dirty && slots_[k].u.id >= first && slots_[k].u.id < end)
      reduce(static_cast<int64_t>(k));
}

void ZeroReplay::finish_step() {
  for (size_t k = 0; k < slots_.size(); ++k)
    if (slots_[k].dirty) reduce(static_cast<int64_t>(k));
  drain(0);
  *bytes_ += 16;  // the squared norm's all-reduce (one double)
  if (stage_ == 1 || stage_ == 2)
    for (const Slot& s : slots_) *bytes_ += padded(s);  // the updated shards all-gathered
  for (Slot& s : slots_) {
    if (stage_ >= 2) l_.free(s.full_grads);
    if (stage_ == 3 && s.u.pinned) {
      l_.free(s.full_params);
      l_.free(s.bf16);
    }
  }
}

}  // namespace strata
