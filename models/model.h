#pragma once
// The hybrid Linear-Llama of shared/MODEL.md as a sequence of parameter units:
//   units[0] = embedding, units[1..L] = blocks, units[L+1] = head (final norm + lm_head).
// The model knows nothing of ranks. Parallelism and offload act from outside, through the hooks
// called at each block boundary (ZeRO-3 gathers there, offload swaps there).
#include <cstdint>
#include <vector>

#include "models/block.h"
#include "models/config.h"
#include "models/param_unit.h"
#include "offload/activation_store.h"

namespace strata {

// Called around each block's forward and backward; `unit` indexes Model::units().
class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  virtual void before_forward(int64_t /*unit*/) {}
  virtual void after_forward(int64_t /*unit*/) {}
  virtual void before_backward(int64_t /*unit*/) {}
  virtual void after_backward(int64_t /*unit*/) {}
};

class Model {
 public:
  explicit Model(const ModelConfig& cfg);

  const ModelConfig& config() const { return cfg_; }
  std::vector<ParamUnit>& units() { return units_; }
  const std::vector<ParamUnit>& units() const { return units_; }
  ParamUnit& embedding() { return units_.front(); }
  ParamUnit& head() { return units_.back(); }
  int64_t num_parameters() const;

  // Every tensor from (seed, name): the same numbers for every layout.
  void init(uint64_t seed);
  void zero_grads();

  // One micro-batch: forward, loss, backward. tokens, targets: [B*T] (targets -1 = ignored).
  // Gradients ACCUMULATE (scaled by loss_scale = 1 / global counted-token count) so micro-batches
  // and ranks sum to the gradient of the globally normalised loss. Returns the UNSCALED loss sum.
  double forward_backward(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                          float loss_scale, ActivationStore& store, int64_t micro_batch,
                          BlockHooks* hooks = nullptr);
  // Loss sum only (evaluation); *counted gets the number of counted targets.
  double forward_loss(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                      int64_t* counted, BlockHooks* hooks = nullptr);

 private:
  // Final norm + LM head + cross-entropy over h [N, D], in row chunks to bound the logits
  // buffer. With dh != nullptr also the backward: dh (overwritten) and head/embedding grads.
  double head_loss(const float* h, const int32_t* targets, int64_t N, float loss_scale, float* dh);
  const float* output_weight() const;  // lm_head, or the embedding when tied
  float* output_weight_grad();

  ModelConfig cfg_;
  std::vector<Block> blocks_;
  std::vector<ParamUnit> units_;
};

}  // namespace strata
