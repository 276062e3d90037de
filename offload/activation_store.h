#pragma once
// Every saved activation goes through the ActivationStore, keyed by (micro-batch, block), so
// keeping, recomputing (and later swapping) are policies here, not rewrites of the model.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "offload/saved_tensors.h"

namespace strata {

enum class ActivationPolicy { keep, recompute };
ActivationPolicy parse_activation_policy(const std::string& s);  // InputError on unknown
const char* activation_policy_name(ActivationPolicy p);

class ActivationStore {
 public:
  // `input_name` is the saved tensor that recompute starts from (the block input).
  ActivationStore(int64_t n_blocks, ActivationPolicy policy, std::string input_name = "x");

  void set_policy(int64_t block, ActivationPolicy p);
  ActivationPolicy policy(int64_t block) const { return policies_.at(static_cast<size_t>(block)); }

  // After a block's forward: the store takes the set; under `recompute` it keeps only the input.
  void save(int64_t micro_batch, int64_t block, SavedTensors&& saved);

  // Before the block's backward: hands the full set back (and forgets it). Under `recompute`
  // it first calls rebuild(input, out) to run the block's forward again into `out`.
  using Rebuild = std::function<void(const float* input, SavedTensors& out)>;
  SavedTensors take(int64_t micro_batch, int64_t block, const Rebuild& rebuild);

  int64_t bytes_held() const;
  int64_t recomputed_blocks() const { return recomputed_; }
  bool empty() const { return held_.empty(); }

 private:
  std::vector<ActivationPolicy> policies_;
  std::string input_name_;
  std::map<std::pair<int64_t, int64_t>, SavedTensors> held_;
  int64_t recomputed_ = 0;
};

}  // namespace strata
