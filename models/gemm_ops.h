#pragma once
// The Linear layers' GEMMs of one unit in the run's precision (core/precision.h), so a layer is
// written once for both: fp32, the GEMMs of core/gemm.h on the fp32 weights and activations;
// bf16, both operands in bf16 (the unit's bf16 weights, ParamUnit::params_bf16(); activations
// saved in bf16 or cast here) with fp32 accumulation into fp32 outputs (core/gemm_bf16.h).
//
// An Operand is an activation feeding a GEMM as it is stored: fp32, or bf16 values held in a
// FloatBuffer of half as many floats, so the activation store, the swap tiers and the deferred
// weight gradients move it as bytes, unchanged (and half of them).
#include <cstdint>
#include <string>

#include "core/bf16.h"
#include "core/precision.h"
#include "models/param_unit.h"
#include "offload/saved_tensors.h"

namespace strata {

struct Operand {
  const float* f32 = nullptr;  // exactly one of the two is set
  const bf16* b16 = nullptr;
  SharedBuffer keep;  // the buffer holding it, when shared (a deferred GEMM keeps it alive)
};

// Floats of a FloatBuffer holding n values in the precision.
inline int64_t operand_floats(Precision p, int64_t n) {
  return p == Precision::bf16 ? (n + 1) / 2 : n;
}
inline bf16* as_bf16(FloatBuffer& b) { return reinterpret_cast<bf16*>(b.data()); }
inline const bf16* as_bf16(const FloatBuffer& b) { return reinterpret_cast<const bf16*>(b.data()); }

// The operand a shared buffer holds in the precision.
Operand operand_of(Precision p, const SharedBuffer& b);
// x [n] (fp32) as an operand in the precision: x itself (fp32; `keep`, when given, is the buffer
// holding it), or a fresh bf16 copy (bf16) held by the operand.
Operand to_operand(Precision p, const float* x, int64_t n, const SharedBuffer& keep = nullptr);

class UnitGemms {
 public:
  // `w`: the unit's fp32 parameters (its flat buffer); under bf16 the unit's bf16 copy is used.
  UnitGemms(Precision p, const ParamUnit& u, const float* w);
  Precision precision() const { return p_; }

  // Y[M,N] (+)= X[M,K] W^T, W the unit's [N, K] tensor at offset w_off.
  void forward(const Operand& X, int64_t w_off, float* Y, int64_t M, int64_t N, int64_t K,
               bool accumulate = false) const;
  // Y[M,N] = X[M,K] W^T into a new tensor of `saved` under `name`, stored in the precision
  // (bf16: the accumulation rounded once as the GEMM writes it, no fp32 copy): a projection the
  // backward reads again. Returns it as an operand.
  Operand forward_saved(SavedTensors& saved, const std::string& name, const Operand& X,
                        int64_t w_off, int64_t M, int64_t N, int64_t K) const;
  // Y[M,N] = X[M,K] W^T stored in bf16 (the accumulation rounded once), bf16 precision only.
  void forward_bf16(const Operand& X, int64_t w_off, bf16* Y, int64_t M, int64_t N,
                    int64_t K) const;
  // dX[M,K] (+)= dY[M,N] W.
  void backward_input(const Operand& dY, int64_t w_off, float* dX, int64_t M, int64_t N, int64_t K,
                      bool accumulate = false) const;

 private:
  Precision p_;
  const float* w_;
  const bf16* wb_ = nullptr;
};

// dW[N,K] += dY[M,N]^T X[M,K] into fp32 gradients; both operands in the same precision.
void gemm_backward_weight(const Operand& dY, const Operand& X, float* dW, int64_t M, int64_t N,
                          int64_t K);

}  // namespace strata
