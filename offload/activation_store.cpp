#include "offload/activation_store.h"

#include "core/error.h"

namespace strata {

ActivationPolicy parse_activation_policy(const std::string& s) {
  if (s == "keep") return ActivationPolicy::keep;
  if (s == "recompute") return ActivationPolicy::recompute;
  throw InputError("offload.policy: expected keep or recompute, got '" + s + "'");
}

const char* activation_policy_name(ActivationPolicy p) {
  return p == ActivationPolicy::keep ? "keep" : "recompute";
}

ActivationStore::ActivationStore(int64_t n_blocks, ActivationPolicy policy, std::string input_name)
    : policies_(static_cast<size_t>(n_blocks), policy), input_name_(std::move(input_name)) {}

void ActivationStore::set_policy(int64_t block, ActivationPolicy p) {
  policies_.at(static_cast<size_t>(block)) = p;
}

void ActivationStore::save(int64_t micro_batch, int64_t block, SavedTensors&& saved) {
  const auto key = std::make_pair(micro_batch, block);
  STRATA_CHECK(!held_.count(key), "activations of micro-batch " + std::to_string(micro_batch) +
                                      ", block " + std::to_string(block) + " saved twice");
  if (policy(block) == ActivationPolicy::recompute) saved.keep_only(input_name_);
  held_.emplace(key, std::move(saved));
}

SavedTensors ActivationStore::take(int64_t micro_batch, int64_t block, const Rebuild& rebuild) {
  auto it = held_.find(std::make_pair(micro_batch, block));
  STRATA_CHECK(it != held_.end(), "no activations for micro-batch " + std::to_string(micro_batch) +
                                      ", block " + std::to_string(block));
  SavedTensors saved = std::move(it->second);
  held_.erase(it);
  if (policy(block) == ActivationPolicy::recompute) {
    SavedTensors full;
    rebuild(saved.get(input_name_), full);
    ++recomputed_;
    return full;
  }
  return saved;
}

int64_t ActivationStore::bytes_held() const {
  int64_t total = 0;
  for (const auto& kv : held_) total += kv.second.bytes();
  return total;
}

}  // namespace strata
