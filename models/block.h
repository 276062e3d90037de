#pragma once
// One transformer block of the hybrid Linear-Llama (shared/MODEL.md):
//   h = x + Mixer(RMSNorm(x; g_in));  y = h + W_down(SiLU(W_gate m) * (W_up m)),  m = RMSNorm(h;
//   g_post)
// Mixer is linear attention ('L') or softmax attention ('S'). Hand-written forward and backward;
// the block knows nothing of ranks: weights come in as a pointer to its flat buffer. Its GEMMs run
// in the config's precision (models/gemm_ops.h).
//
// What the forward saves: each RMSNorm keeps its normalised rows (xn1, xn2, and the linear
// mixer's per-head u) and its statistics, not its input. The inputs are the residual stream x,
// h1 and the attention output o, which nothing else in the backward reads, and the GEMM operands
// a = xn1 * g_in, m = xn2 * g_post, u * g_out are formed again from the rows, bit for bit. The
// rest: act, the projections gate and up, the linear mixer's qp, kp and v, the softmax mixer's
// attention operands q, k_all, v_all and o. In bf16 all of these are kept in bf16 and only the
// statistics (inv1, inv2, inv_o, the softmax's lse) and the linear state prefix stay in fp32, so
// a block saves about half the bytes it does in fp32. A linear mixer saves neither q nor k: they
// are element-wise functions of qp and kp, formed again in the backward.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/config.h"
#include "models/deferred_grads.h"
#include "models/gemm_ops.h"
#include "models/param_unit.h"
#include "offload/saved_tensors.h"
#include "parallel/comm.h"

namespace strata {

struct BlockShape {
  int64_t B = 0;       // sequences
  int64_t T = 0;       // tokens per sequence (this rank's chunk)
  int64_t pos0 = 0;    // global position of the first token (RoPE, causal mask)
  Comm* sp = nullptr;  // sequence-parallel group holding the other chunks; nullptr = none
  int64_t tokens() const { return B * T; }
};

class Block {
 public:
  Block(const ModelConfig& cfg, int64_t index);

  // Declares this block's tensors (names of shared/MODEL.md) in `unit`.
  void declare(ParamUnit& unit) const;
  char mixer() const { return mixer_; }
  int64_t index() const { return index_; }

  // x, y: [B*T, D]. `w` is the block's flat parameter buffer. Saves what backward needs into
  // `saved`; not x itself (a caller that recomputes keeps it).
  void forward(const ParamUnit& layout, const float* w, const float* x, float* y,
               const BlockShape& s, SavedTensors& saved) const;
  // dy: [B*T, D] -> dx: [B*T, D] (overwritten); parameter gradients accumulate into `dw`.
  // Consumes `saved`: the MLP's saved buffers double as its gradient scratch, and each tensor
  // is released after its last use, so activation memory falls through the backward.
  // `at` (optional) is called as the backward frees memory, so a caller can bring the next
  // block's swapped activations back into the room just freed, in the order they are needed.
  struct BackwardPoints {
    std::function<void()> mlp_done;        // the MLP half is done, its tensors released
    std::function<void()> attention_done;  // the attention core is done, its tensors released
  };
  void backward(const ParamUnit& layout, const float* w, float* dw, SavedTensors& saved,
                const float* dy, float* dx, const BlockShape& s,
                const BackwardPoints* at = nullptr) const;
  // The same backward split in two, for the zero-bubble pipeline schedules.
  // I: dx and the RMSNorm gain gradients (cheap, accumulated into `dw` now); every weight-matrix
  // GEMM (q/k/v/o of the mixer, gate/up/down of the MLP) is recorded into `deferred` instead of
  // run, with its inputs (dy is copied: the caller may overwrite dy and dx once this returns).
  // The sequence-parallel collectives all stay in I; only local GEMMs are deferred. Those
  // inputs stay held until W (deferred.bytes(): dy, act, gate, up, m, a, dq/dk/dv, ...), so memory
  // falls less through I than through backward, though `at` is called at the same points.
  void backward_input(const ParamUnit& layout, const float* w, float* dw, SavedTensors& saved,
                      const float* dy, float* dx, const BlockShape& s,
                      DeferredWeightGrads& deferred, const BackwardPoints* at = nullptr) const;
  // W: runs the recorded GEMMs into `dw`. I then W leaves dx and dw bit-identical to backward.
  static void backward_weight(DeferredWeightGrads& deferred, float* dw);
  // The saved tensors the MLP half of the backward reads (it runs first).
  static const std::vector<std::string>& mlp_saved_names();

 private:
  // Where the weight-gradient GEMMs go: run now (backward) or recorded (backward_input); one
  // code path for both, so the undeferred arithmetic cannot drift from the deferred one.
  struct GradSink;
  void backward_impl(const ParamUnit& u, const float* w, const GradSink& g, SavedTensors& saved,
                     const float* dy, float* dx, const BlockShape& s,
                     const BackwardPoints* at) const;
  // h1 [N, D] in, y = h1 + MLP(h1) out, in place.
  void mlp_forward(const ParamUnit& u, const float* w, const UnitGemms& gm, float* h1, int64_t N,
                   SavedTensors& saved) const;
  void mlp_backward(const ParamUnit& u, const float* w, const UnitGemms& gm, const GradSink& g,
                    SavedTensors& saved, const float* dy, float* dh1, int64_t N) const;
  void linear_mixer_forward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                            const Operand& a, float* out, const BlockShape& s,
                            SavedTensors& saved) const;
  void linear_mixer_backward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                             const GradSink& g, SavedTensors& saved, const SharedBuffer& dout,
                             float* da, const BlockShape& s, const BackwardPoints* at) const;
  void softmax_mixer_forward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                             const Operand& a, float* out, const BlockShape& s,
                             SavedTensors& saved) const;
  void roped_projection_bf16(const UnitGemms& gm, const Operand& a, int64_t w_off, int64_t heads,
                             const BlockShape& s, bf16* y) const;
  void softmax_mixer_backward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                              const GradSink& g, SavedTensors& saved, const SharedBuffer& dout,
                              float* da, const BlockShape& s, const BackwardPoints* at) const;
  void input_projections_backward(const ParamUnit& u, const UnitGemms& gm, const GradSink& g,
                                  const Operand& a, const Operand& dQ, const Operand& dK,
                                  const Operand& dV, int64_t Ekv, float* da, int64_t N) const;
  Operand saved_operand(const SavedTensors& saved, const std::string& name) const;
  // Saves x [N, C]'s normalised rows under `rows` in the precision, their statistics under
  // `stats`.
  void save_normalised(SavedTensors& saved, const char* rows, const char* stats, const float* x,
                       int64_t N, int64_t C) const;
  // RMSNorm(x [N, C]; g) as a GEMM operand: save_normalised and then rows * g in a buffer of its
  // own (norm_operand), in one pass (rmsnorm_normalise_gain).
  Operand norm_forward(SavedTensors& saved, const char* rows, const char* stats, const float* x,
                       const float* g, int64_t N, int64_t C) const;
  // The saved rows [N, C] times g as an operand, in the precision: what the forward used.
  Operand norm_operand(const SavedTensors& saved, const char* rows, const float* g, int64_t N,
                       int64_t C) const;
  // dy [N, C] -> dx [N, C] through the norm (g, dg: [C] or nullptr), from the saved rows.
  // dx = the norm's input gradient (+ residual, a residual branch's gradient, when given).
  void norm_backward(const SavedTensors& saved, const char* rows, const char* stats, const float* g,
                     const float* dy, float* dx, float* dg, int64_t N, int64_t C,
                     const float* residual = nullptr) const;

  ModelConfig cfg_;
  int64_t index_;
  char mixer_;
  int64_t D_, H_, Hkv_, dh_, F_;
  std::vector<float> gammas_;  // per-head decay of linear attention
};

}  // namespace strata
