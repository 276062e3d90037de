#include "offload/activation_store.h"

#include <algorithm>
#include <unordered_set>

#include "core/clock.h"
#include "core/error.h"

namespace strata {

ActivationPolicy parse_activation_policy(const std::string& s) {
  if (s == "keep") return ActivationPolicy::keep;
  if (s == "recompute") return ActivationPolicy::recompute;
  if (s == "swap") return ActivationPolicy::swap;
  throw InputError("offload.policy: expected keep, recompute or swap, got '" + s + "'");
}

const char* activation_policy_name(ActivationPolicy p) {
  switch (p) {
    case ActivationPolicy::keep:
      return "keep";
    case ActivationPolicy::recompute:
      return "recompute";
    case ActivationPolicy::swap:
      return "swap";
  }
  return "?";
}

ActivationStore::ActivationStore(int64_t n_blocks, ActivationPolicy policy, std::string input_name,
                                 std::unique_ptr<SwapTier> tier)
    : policies_(static_cast<size_t>(n_blocks), policy),
      input_name_(std::move(input_name)),
      tier_(std::move(tier)),
      measures_(static_cast<size_t>(n_blocks)) {}

// Held sets and tier entries are dropped before the tier (members go in reverse order); their
// handles die with it.
ActivationStore::~ActivationStore() = default;

void ActivationStore::set_policy(int64_t block, ActivationPolicy p) {
  policies_.at(static_cast<size_t>(block)) = p;
}

void ActivationStore::set_writes_in_flight(int64_t sets) {
  STRATA_CHECK(sets >= 1, "writes in flight must be at least one set");
  writes_in_flight_ = sets;
}

// At most writes_in_flight_ - 1 earlier sets still writing when the next block saves: the wait
// for the oldest is where a device slower than the forward holds the forward back, instead of
// the unwritten sets piling up in memory. Also at a kept block's save, so after the forward's
// last block the swap writes have landed at the same point every run.
void ActivationStore::bound_writes() {
  while (std::ssize(writing_sets_) > writes_in_flight_ - 1) {
    const auto t0 = Clock::now();
    for (SwapTier::Handle h : writing_sets_.front()) tier_->wait_written(h);
    write_s_ += seconds_since(t0);
    writing_sets_.pop_front();
  }
}

SwapTier& ActivationStore::swap_tier() {
  if (!tier_) {
    SwapOptions host;
    host.tier = SwapTierKind::host;
    tier_ = SwapTier::create(host);
  }
  return *tier_;
}

void ActivationStore::release(const std::shared_ptr<SwapEntry>& e) {
  if (--e->refs > 0) return;
  if (e->handle >= 0) tier_->discard(e->handle);  // never read back: it stayed in memory
  e->handle = -1;
  written_.erase(e->origin);
}

// While unwinding from an error: a failing discard must not replace the error being reported.
void ActivationStore::release_quietly(const std::vector<Swapped>& out, size_t from) {
  for (size_t j = from; j < out.size(); ++j) {
    try {
      release(out[j].entry);
    } catch (...) {
    }
  }
}

void ActivationStore::put_on_tier(Held& held, const std::string& name, SharedBuffer buf) {
  auto found = written_.find(std::weak_ptr<FloatBuffer>(buf));
  if (found != written_.end()) {  // shared with a set saved before: already on the tier
    ++found->second->refs;
    held.out.push_back({name, found->second});
    return;
  }
  auto e = std::make_shared<SwapEntry>();
  e->origin = buf;
  e->refs = 1;
  const int64_t bytes = buf->bytes();
  const auto t0 = Clock::now();
  // Sole owner: the buffer itself goes to the tier (zero-copy on nvme). Held elsewhere too (by
  // the caller or a kept set): the tier gets a copy and the others keep theirs.
  if (buf.use_count() == 1)
    e->handle = swap_tier().write_buffer(std::move(*buf));
  else
    e->handle = swap_tier().write(buf->data(), bytes);
  write_s_ += seconds_since(t0);
  bytes_written_ += bytes;
  written_.emplace(e->origin, e);
  held.out.push_back({name, std::move(e)});
}

void ActivationStore::save(int64_t micro_batch, int64_t block, SavedTensors&& saved) {
  const auto key = std::make_pair(micro_batch, block);
  STRATA_CHECK(!held_.count(key), "activations of micro-batch " + std::to_string(micro_batch) +
                                      ", block " + std::to_string(block) + " saved twice");
  bound_writes();
  Held held;
  switch (policy(block)) {
    case ActivationPolicy::keep:
      held.mem = std::move(saved);
      break;
    case ActivationPolicy::recompute:
      saved.keep_only(input_name_);
      held.mem = std::move(saved);
      break;
    case ActivationPolicy::swap: {
      auto items = saved.release();
      try {
        for (auto& [name, buf] : items) {
          held.order.push_back(name);
          // Moved out of `items`, so memory drops tensor by tensor, not at the end of the set.
          if (buf->size() == 0)
            held.mem.share(name, std::move(buf));  // nothing to write
          else
            put_on_tier(held, name, std::move(buf));
        }
      } catch (...) {
        release_quietly(held.out, 0);
        throw;
      }
      std::vector<SwapTier::Handle> handles;
      for (const Swapped& x : held.out) handles.push_back(x.entry->handle);
      writing_sets_.push_back(std::move(handles));
      ++swapped_;
      break;
    }
  }
  held_.emplace(key, std::move(held));
}

void ActivationStore::prefetch(int64_t micro_batch, int64_t block,
                               const std::vector<std::string>* only) {
  if (!tier_) return;
  auto it = held_.find(std::make_pair(micro_batch, block));
  if (it != held_.end()) prefetch_entries(it->second, only);
}

void ActivationStore::prefetch_entries(const Held& held, const std::vector<std::string>* only) {
  for (const Swapped& s : held.out) {
    if (only && std::find(only->begin(), only->end(), s.name) == only->end()) continue;
    const SwapEntry& e = *s.entry;
    if (e.back || e.handle < 0) continue;
    const SharedBuffer origin = e.origin.lock();
    if (origin && origin->data()) continue;  // still in memory: nothing to read
    tier_->prefetch(e.handle);
  }
}

SavedTensors ActivationStore::take(int64_t micro_batch, int64_t block, const Rebuild& rebuild) {
  auto it = held_.find(std::make_pair(micro_batch, block));
  STRATA_CHECK(it != held_.end(), "no activations for micro-batch " + std::to_string(micro_batch) +
                                      ", block " + std::to_string(block));
  Held held = std::move(it->second);
  held_.erase(it);
  if (!held.order.empty()) {  // a swapped set
    // Issue every read of the set before waiting on the first, so they overlap each other.
    prefetch_entries(held);
    SavedTensors full;
    size_t next_out = 0;
    try {
      for (const std::string& name : held.order) {
        if (next_out < held.out.size() && held.out[next_out].name == name) {
          SwapEntry& e = *held.out[next_out].entry;
          if (!e.back) {
            SharedBuffer origin = e.origin.lock();
            if (origin && origin->data()) {
              e.back = std::move(origin);  // a tensor still in memory is not read back
            } else {
              const auto t0 = Clock::now();
              e.back = std::make_shared<FloatBuffer>(
                  tier_->read_buffer(e.handle, MemCategory::activations));
              e.handle = -1;
              read_wait_s_ += seconds_since(t0);
            }
          }
          full.share(name, e.back);
          release(held.out[next_out].entry);
          ++next_out;
        } else {
          full.share(name, held.mem.buffer(name));
        }
      }
    } catch (...) {
      release_quietly(held.out, next_out);
      throw;
    }
    tier_->poll();
    return full;
  }
  if (policy(block) == ActivationPolicy::recompute) {
    SavedTensors full;
    rebuild(held.mem.get(input_name_), full);
    ++recomputed_;
    return full;
  }
  return std::move(held.mem);
}

void ActivationStore::record_forward(int64_t block, double seconds, int64_t saved_bytes,
                                     int64_t input_bytes) {
  BlockMeasure& m = measures_.at(static_cast<size_t>(block));
  m.forward_s = seconds;
  m.saved_bytes = saved_bytes;
  m.input_bytes = input_bytes;
}

void ActivationStore::record_backward(int64_t block, double seconds) {
  measures_.at(static_cast<size_t>(block)).backward_s = seconds;
}

int64_t ActivationStore::bytes_held() const {
  std::unordered_set<const FloatBuffer*> seen;  // a buffer shared by several sets counts once
  int64_t total = 0;
  for (const auto& kv : held_)
    for (const auto& [name, buf] : kv.second.mem.items())
      if (seen.insert(buf.get()).second) total += buf->capacity_bytes();
  return total;
}

}  // namespace strata
