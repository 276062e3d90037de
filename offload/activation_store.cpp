#include "offload/activation_store.h"

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
      tier_(std::move(tier)) {}

// Held sets are dropped before the tier (members go in reverse order); their handles die with it.
ActivationStore::~ActivationStore() = default;

void ActivationStore::set_policy(int64_t block, ActivationPolicy p) {
  policies_.at(static_cast<size_t>(block)) = p;
}

void ActivationStore::save(int64_t micro_batch, int64_t block, SavedTensors&& saved) {
  const auto key = std::make_pair(micro_batch, block);
  STRATA_CHECK(!held_.count(key), "activations of micro-batch " + std::to_string(micro_batch) +
                                      ", block " + std::to_string(block) + " saved twice");
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
      if (!tier_) {
        SwapOptions host;
        host.tier = SwapTierKind::host;
        tier_ = SwapTier::create(host);
      }
      auto items = saved.release();
      try {
        for (auto& [name, buf] : items) {
          Swapped s{name, buf.size(), -1};
          if (buf.size() > 0) s.handle = tier_->write(buf.data(), buf.bytes());
          held.out.push_back(std::move(s));
          buf.reset();  // activation memory drops tensor by tensor, not at the end of the set
        }
      } catch (...) {
        for (const Swapped& s : held.out)
          if (s.handle >= 0) tier_->discard(s.handle);
        throw;
      }
      ++swapped_;
      break;
    }
  }
  held_.emplace(key, std::move(held));
}

void ActivationStore::prefetch(int64_t micro_batch, int64_t block) {
  if (!tier_) return;
  auto it = held_.find(std::make_pair(micro_batch, block));
  if (it == held_.end()) return;
  for (const Swapped& s : it->second.out)
    if (s.handle >= 0) tier_->prefetch(s.handle);
}

SavedTensors ActivationStore::take(int64_t micro_batch, int64_t block, const Rebuild& rebuild) {
  auto it = held_.find(std::make_pair(micro_batch, block));
  STRATA_CHECK(it != held_.end(), "no activations for micro-batch " + std::to_string(micro_batch) +
                                      ", block " + std::to_string(block));
  Held held = std::move(it->second);
  held_.erase(it);
  if (!held.out.empty()) {
    // Issue every read of the set before waiting on the first, so they overlap each other.
    for (const Swapped& s : held.out)
      if (s.handle >= 0) tier_->prefetch(s.handle);
    SavedTensors full;
    for (size_t i = 0; i < held.out.size(); ++i) {
      const Swapped& s = held.out[i];
      float* dst = full.add(s.name, s.n);
      if (s.handle < 0) continue;
      try {
        tier_->read(s.handle, dst);
      } catch (...) {
        for (size_t j = i + 1; j < held.out.size(); ++j)
          if (held.out[j].handle >= 0) tier_->discard(held.out[j].handle);
        throw;
      }
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

int64_t ActivationStore::bytes_held() const {
  int64_t total = 0;
  for (const auto& kv : held_) total += kv.second.mem.bytes();
  return total;
}

}  // namespace strata
