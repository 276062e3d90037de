#pragma once
// The hybrid Linear-Llama of shared/MODEL.md as a sequence of parameter units:
//   units[0] = embedding, units[1..L] = blocks, units[L+1] = head (final norm + lm_head).
// The model knows nothing of ranks. Parallelism and offload act from outside, through the hooks
// called at each block boundary (ZeRO-3 gathers there, offload swaps there).
#include <cstdint>
#include <vector>

#include "core/unit_pass.h"
#include "models/block.h"
#include "models/config.h"
#include "models/param_unit.h"
#include "offload/activation_store.h"

namespace strata {

// Called around each unit's passes; `unit` indexes Model::units(). prefetch(u) announces the unit
// whose pass comes next (ZeRO-3 starts gathering it while this one computes).
class BlockHooks {
 public:
  virtual ~BlockHooks() = default;
  virtual void before(int64_t /*unit*/, UnitPass /*pass*/) {}
  virtual void after(int64_t /*unit*/, UnitPass /*pass*/) {}
  virtual void prefetch(int64_t /*unit*/) {}
};

// Vocabulary parallelism: the embedding and the LM head split by rows over `count` ranks, this
// process holding shard `index` (rows [index * rows, (index + 1) * rows) of the vocabulary padded
// to a multiple of count). Then the head unit is the final norm alone, and the untied LM head is
// a unit of its own after it (units[L+2]); the embedding unit is the shard. Off (the default):
// the whole embedding and the head unit with the whole LM head.
struct VocabSplit {
  bool on = false;
  int index = 0, count = 1;
  int64_t rows(int64_t vocab) const { return on ? (vocab + count - 1) / count : vocab; }
  int64_t row0(int64_t vocab) const { return on ? index * rows(vocab) : 0; }
};

class Model {
 public:
  // `held` (one flag per unit; empty = all): the units whose parameters and gradients this
  // process allocates. A pipeline stage holds only its own; the others keep their layout (names,
  // shapes) for checkpoints and planning but no memory.
  explicit Model(const ModelConfig& cfg, const std::vector<bool>& held = {},
                 VocabSplit split = {});

  const ModelConfig& config() const { return cfg_; }
  std::vector<ParamUnit>& units() { return units_; }
  const std::vector<ParamUnit>& units() const { return units_; }
  ParamUnit& embedding() { return units_.front(); }
  ParamUnit& head() { return units_[static_cast<size_t>(head_unit())]; }
  int64_t num_parameters() const;
  bool holds(int64_t unit) const { return held_.at(static_cast<size_t>(unit)); }
  const VocabSplit& vocab_split() const { return split_; }
  int64_t head_unit() const { return cfg_.n_layers + 1; }
  // The unit holding the output weight's rows: the head (or the embedding when tied); with
  // vocabulary parallelism the LM head unit (or the embedding shard when tied).
  int64_t output_unit() const;
  // The output weight [rows, D] (this process's rows) and its gradient.
  const float* output_weight() const;
  // The same rows as bf16 under the bf16 precision (ParamUnit::params_bf16), else nullptr.
  const bf16* output_weight_bf16() const;
  float* output_weight_grad();
  int64_t n_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  const Block& block(int64_t i) const { return blocks_.at(static_cast<size_t>(i)); }

  // Every tensor from (seed, name): the same numbers for every layout.
  void init(uint64_t seed);
  void zero_grads();

  // One micro-batch through the whole model (models/model_stage.h, the stage of every unit):
  // forward, loss, backward. tokens, targets: [B*T] (targets -1 = ignored). Gradients ACCUMULATE
  // (scaled by loss_scale = 1 / global counted-token count) so micro-batches and ranks sum to the
  // gradient of the globally normalised loss. Returns the UNSCALED loss sum.
  double forward_backward(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                          float loss_scale, ActivationStore& store, int64_t micro_batch,
                          BlockHooks* hooks = nullptr);
  // Loss sum only (evaluation); *counted gets the number of counted targets.
  double forward_loss(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                      int64_t* counted, BlockHooks* hooks = nullptr);

  // The head pass: final norm + LM head + cross-entropy over h [N, D], in row chunks to bound
  // the logits buffer. With dh != nullptr also its backward: dh (overwritten) and the head's
  // (and, tied, the embedding's) gradients. Returns the unscaled loss sum.
  double head_loss(const float* h, const int32_t* targets, int64_t N, float loss_scale, float* dh);

 private:
  ModelConfig cfg_;
  VocabSplit split_;
  std::vector<Block> blocks_;
  std::vector<ParamUnit> units_;
  std::vector<bool> held_;
};

}  // namespace strata
