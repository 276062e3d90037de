#pragma once
// Every saved activation goes through the ActivationStore, keyed by (micro-batch, block), so
// keeping, recomputing and swapping are policies here, not rewrites of the model.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "offload/saved_tensors.h"
#include "offload/tier.h"

namespace strata {

enum class ActivationPolicy { keep, recompute, swap };
ActivationPolicy parse_activation_policy(const std::string& s);  // InputError on unknown
const char* activation_policy_name(ActivationPolicy p);

class ActivationStore {
 public:
  // `input_name` is the saved tensor that recompute starts from (the block input). `tier` is
  // where `swap` blocks go; without one, the first swap save makes a host tier.
  ActivationStore(int64_t n_blocks, ActivationPolicy policy, std::string input_name = "x",
                  std::unique_ptr<SwapTier> tier = nullptr);
  // Destroying the store destroys the tier: in-flight I/O is drained and the swap file removed,
  // also when the store goes away while an exception unwinds.
  ~ActivationStore();

  void set_policy(int64_t block, ActivationPolicy p);
  ActivationPolicy policy(int64_t block) const { return policies_.at(static_cast<size_t>(block)); }

  // After a block's forward: the store takes the set; under `recompute` it keeps only the input;
  // under `swap` every tensor (the input too) is copied to the tier and its memory freed.
  void save(int64_t micro_batch, int64_t block, SavedTensors&& saved);

  // Starts bringing a swapped set back ahead of its take() (a no-op for other policies and for
  // sets not held), so the reads overlap the backward of the block before it.
  void prefetch(int64_t micro_batch, int64_t block);

  // Before the block's backward: hands the full set back (and forgets it). Under `recompute`
  // it first calls rebuild(input, out) to run the block's forward again into `out`; under
  // `swap` it reads the tensors back, same names, sizes and order, bit for bit.
  using Rebuild = std::function<void(const float* input, SavedTensors& out)>;
  SavedTensors take(int64_t micro_batch, int64_t block, const Rebuild& rebuild);

  int64_t bytes_held() const;  // activation memory held (swapped tensors do not count)
  int64_t bytes_swapped() const { return tier_ ? tier_->bytes_used() : 0; }
  int64_t recomputed_blocks() const { return recomputed_; }
  int64_t swapped_blocks() const { return swapped_; }
  bool empty() const { return held_.empty(); }
  SwapTier* tier() { return tier_.get(); }

 private:
  struct Swapped {
    std::string name;
    int64_t n = 0;  // floats
    SwapTier::Handle handle = -1;
  };
  struct Held {
    SavedTensors mem;
    std::vector<Swapped> out;  // in the order they were saved
  };

  std::vector<ActivationPolicy> policies_;
  std::string input_name_;
  std::unique_ptr<SwapTier> tier_;
  std::map<std::pair<int64_t, int64_t>, Held> held_;
  int64_t recomputed_ = 0;
  int64_t swapped_ = 0;
};

}  // namespace strata
