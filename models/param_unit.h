#pragma once
// Parameters are grouped in units (the embedding, each block, the head), each stored in ONE flat
// fp32 buffer, so ZeRO shards, collectives, checkpoints and offload move whole buffers with no
// per-tensor bookkeeping. A unit knows each tensor's name, shape and offset in its buffer.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/bf16.h"
#include "core/memory.h"
#include "core/weights_epoch.h"
#include "optim/optimizer.h"

namespace strata {

struct TensorSpec {
  std::string name;            // export name, e.g. "model.layers.3.mlp.up_proj.weight"
  std::vector<int64_t> shape;  // row-major [out, in] for matrices
  int64_t offset = 0;          // in elements, within the unit's flat buffer
  int64_t numel = 0;
  float init_std = 0.f;  // N(0, init_std); 0 means a norm gain initialised to 1
  bool decay = true;     // weight decay applies (matrices), not to norm gains
  // A row shard of a larger tensor (vocabulary parallelism: one rank's rows of the embedding or
  // the LM head). The global tensor's shape, where the shard's first element sits in it, and how
  // many leading elements are real rows; the rest is padding (a vocabulary padded to a multiple
  // of the ranks), initialised to 0 and never saved or loaded.
  std::vector<int64_t> global_shape;  // empty: the tensor is whole (= shape)
  int64_t global_offset = 0;          // in elements of the global tensor
  int64_t valid = 0;                  // real elements from the start (= numel when whole)
  const std::vector<int64_t>& stored_shape() const {
    return global_shape.empty() ? shape : global_shape;
  }
};

class ParamUnit {
 public:
  explicit ParamUnit(std::string name) : name_(std::move(name)) {}
  // Appends a tensor to the layout (before allocate()).
  void add(std::string tensor_name, std::vector<int64_t> shape, float init_std, bool decay);
  // Appends rows [row0, row0 + rows) of the global [global_rows, cols] tensor `tensor_name`;
  // rows past global_rows are padding.
  void add_row_shard(std::string tensor_name, int64_t global_rows, int64_t cols, int64_t row0,
                     int64_t rows, float init_std, bool decay);
  // Allocates params and grads (zeroed) for the whole layout.
  void allocate();

  const std::string& name() const { return name_; }
  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  int64_t numel() const { return numel_; }
  // The tensor whose name ends with `suffix` (e.g. "q_proj.weight").
  const TensorSpec& find(std::string_view suffix) const;
  bool contains(std::string_view suffix) const;
  std::vector<DecaySegment> decay_segments() const;

  // Initialise every tensor from (seed, tensor name): layout-independent numbers.
  void init(uint64_t seed);

  FloatBuffer& params() { return params_; }
  const FloatBuffer& params() const { return params_; }
  FloatBuffer& grads() { return grads_; }
  const FloatBuffer& grads() const { return grads_; }

  // The parameters as bf16, the GEMM operands of the bf16 precision: cast from params() on the
  // first use after they changed (core/weights_epoch.h), so once per step after the optimizer,
  // not per GEMM. Charged to MemCategory::params (half the fp32 bytes). Under ZeRO-3 the cast is
  // of the gathered parameters; a re-gather in the same step reuses it (same weights).
  const bf16* params_bf16() const;
  void drop_bf16() const { bf16_ = FloatBuffer(); }
  bool holds_bf16() const { return bf16_.size() > 0; }
  // The held bf16 copy, for an optimizer to write as it updates params() whole
  // (Optimizer::set_bf16_copy), or nullptr when none is held; after the update's epoch bump,
  // bf16_rewritten() marks it current, so params_bf16() does not cast it again.
  bf16* bf16_to_rewrite() const {
    return holds_bf16() ? reinterpret_cast<bf16*>(bf16_.data()) : nullptr;
  }
  void bf16_rewritten() const { bf16_epoch_ = weights_epoch(); }

 private:
  std::string name_;
  std::vector<TensorSpec> tensors_;
  int64_t numel_ = 0;
  FloatBuffer params_;
  FloatBuffer grads_;
  mutable FloatBuffer bf16_;  // ceil(numel / 2) floats holding numel bf16 values
  mutable uint64_t bf16_epoch_ = 0;
};

}  // namespace strata
