#pragma once
// The optimizer interface. Parameters live in one flat fp32 buffer per model block; an optimizer
// updates one contiguous range of such a buffer: the whole buffer, or (under ZeRO) one rank's
// shard [begin, end). Which elements get weight decay is described by segments, so the same
// optimizer serves any shard once the segments are clipped to it (clip_segments).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/bf16.h"
#include "core/memory.h"

namespace strata {

// [offset, offset + numel) of a flat buffer; decay: matrices yes, norm gains no.
struct DecaySegment {
  int64_t offset;
  int64_t numel;
  bool decay;
};

// The parts of `segments` inside [begin, end), with offsets re-based so that `begin` is 0: what a
// shard's optimizer step needs. Empty intersections are dropped.
std::vector<DecaySegment> clip_segments(const std::vector<DecaySegment>& segments, int64_t begin,
                                        int64_t end);

// Throws (internal check) unless `segments` tile [0, n) in order with no gap or overlap. step()
// calls it: a range with no decay information is a caller bug, not "decay everything".
void check_segments(const std::vector<DecaySegment>& segments, int64_t n);

// All hyperparameters of every optimizer; each one reads the fields it uses.
struct OptimizerOptions {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // decoupled (p -= lr * wd * p), only where a segment says decay
  float momentum = 0.9f;      // sgd
};

class Optimizer {
 public:
  virtual ~Optimizer();

  // One update of params[0, n) from grads[0, n) * grad_scale (the clipping coefficient, applied
  // as each gradient is read: the same bits as scaling the buffer first, one pass fewer); n must
  // equal the size given at construction. Increments steps() first, so the first call is step 1
  // (as PyTorch counts for bias correction). Every override declares the same default.
  virtual void step(float* params, const float* grads, int64_t n,
                    const std::vector<DecaySegment>& segments, float lr,
                    float grad_scale = 1.f) = 0;

  // The bf16 precision's copy of params[0, n) (models/param_unit.h): set, the next step() also
  // stores its updated parameters there, rounded to bf16 as core/bf16.h's to_bf16 rounds them
  // (AdamW as it writes each one; SGD after its update), so no pass of its own re-reads the
  // parameters to cast them. Cleared by that step; nullptr leaves the copy to its owner.
  void set_bf16_copy(bf16* out) { bf16_out_ = out; }

  // The gradients the next step() reads (its `grads`, passed here writable): set, that step also
  // sets each one to zero as it reads it, so the next accumulation starts from zero without a
  // pass of its own over them (a memset of the whole gradient buffer). Cleared by that step.
  void set_grads_to_clear(float* grads) { clear_grads_ = grads; }

  // Number of step() calls so far; set_steps restores it from a checkpoint.
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }

  // Named state buffers ("exp_avg", "exp_avg_sq", "momentum_buffer", ...), each of the size given
  // at construction, for checkpoints and offload. The optimizer keeps ownership.
  virtual std::vector<std::pair<std::string, FloatBuffer*>> state() = 0;

 protected:
  // What step() stores in the bf16 copy (if set) and clears: one read of params[0, n) after the
  // update, for an optimizer that does not fuse it.
  void write_bf16_copy(const float* params, int64_t n);
  // The gradients to clear in this step (nullptr for none; checked to be `grads`), taking the
  // request: step() zeroes each one it has read.
  float* take_grads_to_clear(const float* grads);

  int64_t steps_ = 0;
  bf16* bf16_out_ = nullptr;
  float* clear_grads_ = nullptr;
};

// name: "adamw" | "sgd"; anything else throws InputError("optim.name: ...").
std::unique_ptr<Optimizer> make_optimizer(const std::string& name, int64_t n,
                                          const OptimizerOptions& options);

}  // namespace strata
