#pragma once
// A pipeline stage of the model: the contiguous units [first, end) of Model::units() (units[0] =
// embedding, units[1..L] = blocks, units[L+1] = head) and the passes a schedule runs on one
// micro-batch: forward, backward, and the zero-bubble split of backward into the input gradient
// and the (deferred) weight gradient. The whole model is the stage [0, L+2): one process is the
// list of one stage, not a separate path.
//
// The stage knows nothing of ranks or of where its input comes from: the executor hands it the
// activation (or its gradient) and sends what it writes. Saved activations of every in-flight
// micro-batch go through the ActivationStore, keyed by (micro-batch, block), so keep, recompute,
// swap and auto hold under any order of passes.
//
// The last stage runs the head's forward and backward in its forward pass (the loss gradient is
// known as soon as the loss is): no logits outlive the head, and the backward pass starts from
// the kept dh [N, D]. The embedding's backward (a weight gradient only) runs in B, or in W under
// the split.
#include <cstdint>
#include <map>
#include <vector>

#include "models/deferred_grads.h"
#include "models/model.h"

namespace strata {

// What every pass of one step shares.
struct StageContext {
  BlockShape shape;      // one micro-batch on this rank
  float loss_scale = 1;  // 1 / counted targets of the global batch
  ActivationStore* store = nullptr;
  BlockHooks* hooks = nullptr;  // nullptr: none
};

struct MicroBatch {
  int64_t index = 0;                 // within the step (the ActivationStore's key)
  const int32_t* tokens = nullptr;   // [B*T]: read by the first stage (forward and backward)
  const int32_t* targets = nullptr;  // [B*T]: read by the last stage
};

class ModelStage {
 public:
  ModelStage(Model& model, int64_t first_unit, int64_t end_unit);

  bool is_first() const { return first_ == 0; }  // embeds the tokens itself
  bool has_head() const { return first_ <= model_.head_unit() && model_.head_unit() < end_; }
  // The stage computes the loss itself (the head with the whole output weight). With vocabulary
  // parallelism the head unit is the final norm alone: the stage's output is RMSNorm(h), and the
  // loss and its gradient come from the vocabulary passes of every rank.
  bool is_last() const { return has_head() && !model_.vocab_split().on; }
  int64_t first_unit() const { return first_; }
  int64_t end_unit() const { return end_; }

  // x: [N, D] the previous stage's output (unused on the first stage: tokens are embedded);
  // y: [N, D] written (unused on the last stage). Returns the loss sum on the last stage, else 0.
  double forward(const StageContext& c, const MicroBatch& mb, const float* x, float* y);
  // dy: [N, D] the next stage's input gradient (unused on the last stage: its own loss
  // gradient); dx: [N, D] written (unused on the first stage). Parameter gradients accumulate.
  void backward(const StageContext& c, const MicroBatch& mb, const float* dy, float* dx);
  // The split: backward_input writes dx (and the norm gains' gradients) and records the weight
  // GEMMs; backward_weight runs them (and the embedding's backward). Together == backward.
  void backward_input(const StageContext& c, const MicroBatch& mb, const float* dy, float* dx);
  void backward_weight(const StageContext& c, const MicroBatch& mb);
  // Evaluation: no activations kept, no gradients. Returns the loss sum on the last stage.
  double forward_eval(const StageContext& c, const MicroBatch& mb, const float* x, float* y);

  // Micro-batches with something held here (a kept dh, deferred weight gradients).
  bool idle() const { return in_flight_.empty(); }

 private:
  struct InFlight {
    FloatBuffer dh;                             // last stage: the loss gradient at the head
    std::vector<DeferredWeightGrads> deferred;  // the split: per block, first block first
    FloatBuffer embed_dy;                       // the split, first stage: dh at the embedding
    FloatBuffer h, inv;  // vocabulary parallel, last stage: the final norm's input [N, D], 1/rms
  };
  int64_t first_block() const { return first_ == 0 ? 0 : first_ - 1; }
  int64_t end_block() const;
  const float* blocks_forward(const StageContext& c, const MicroBatch& mb, const float* x,
                              FloatBuffer& a, FloatBuffer& b, bool train);
  void run_backward(const StageContext& c, const MicroBatch& mb, const float* dy, float* dx,
                    UnitPass pass);
  // One block's backward (B or I) from dy into dx.
  void block_backward(const StageContext& c, const MicroBatch& mb, int64_t i, const float* dy,
                      float* dx, UnitPass pass, InFlight& f);
  double head_pass(const StageContext& c, const MicroBatch& mb, const float* h, bool train);
  // Vocabulary parallel: y = RMSNorm(h; g_final); with `train`, h and 1/rms kept for the backward.
  void final_norm(const StageContext& c, const MicroBatch& mb, const float* h, float* y,
                  bool train);
  // Its backward: dy (the gradient at the norm's output) -> dh [N, D]; the gain's gradient.
  FloatBuffer final_norm_backward(const StageContext& c, const MicroBatch& mb, const float* dy,
                                  UnitPass pass);

  Model& model_;
  int64_t first_, end_;
  std::map<int64_t, InFlight> in_flight_;
};

}  // namespace strata
