#pragma once
// RMSNorm over rows: y[n,:] = x[n,:] / sqrt(mean_j x[n,j]^2 + eps) * g   (g = nullptr: gain 1).
#include <cstdint>

#include "core/bf16.h"

namespace strata {

// x, y: [N, D]; inv_rms: [N] saved for backward; g: [D] or nullptr.
template <class T>
void rmsnorm_forward(const T* x, const T* g, T* y, T* inv_rms, int64_t N, int64_t D, float eps);

// dy: [N, D] -> dx: [N, D] (overwritten); dg: [D] accumulated (+=) when g != nullptr.
template <class T>
void rmsnorm_backward(const T* x, const T* g, const T* inv_rms, const T* dy, T* dx, T* dg,
                      int64_t N, int64_t D);

// The same norm split for a block that saves its normalised rows instead of its input (the
// input is the residual stream, needed by nothing else; Apex's and Megatron's
// memory-efficient norms keep the output for the same reason). S is the storage of the saved
// rows: T, or bf16 in the bf16 precision (rounded once, the statistics staying in T).
//   rmsnorm_normalise: xhat[n,:] = x[n,:] * inv_rms[n], the same bits as rmsnorm_forward
//     without a gain;
//   rmsnorm_gain: y[n,j] = xhat[n,j] * g[j], the GEMM operand, run by the forward and formed
//     again by the backward from the saved rows, bit for bit;
//   rmsnorm_normalise_gain: both at once, row by row (the row's xhat read back from L1 for the
//     gain), the same bits as the two passes without the second pass over xhat;
//   rmsnorm_backward_normalised: dx = inv * (gy - xhat * mean_k(gy_k xhat_k)), gy = dy * g
//     (g = nullptr: dy), and dg (+=) sum_n dy * xhat: rmsnorm_backward in terms of xhat. With
//     `residual`, dx = that + residual (rounded after it, as a separate add would): a residual
//     branch's gradient joining in the same pass.
template <class T, class S>
void rmsnorm_normalise(const T* x, S* xhat, T* inv_rms, int64_t N, int64_t D, float eps);
template <class T, class S>
void rmsnorm_gain(const S* xhat, const T* g, S* y, int64_t N, int64_t D);
template <class T, class S>
void rmsnorm_normalise_gain(const T* x, const T* g, S* xhat, S* y, T* inv_rms, int64_t N, int64_t D,
                            float eps);
template <class T, class S>
void rmsnorm_backward_normalised(const S* xhat, const T* g, const T* inv_rms, const T* dy, T* dx,
                                 T* dg, int64_t N, int64_t D, const T* residual = nullptr);

}  // namespace strata
