#pragma once
// Rotary position embedding, rotate-half convention of MODEL.md. For j < dh/2:
//   f_j = theta^(-2j/dh),  angle = pos·f_j,  c = cos(angle),  s = sin(angle)
//   x'[j] = x[j]·c − x[j+dh/2]·s,   x'[j+dh/2] = x[j+dh/2]·c + x[j]·s
// with pos = pos0 + t the GLOBAL position of token t (sequence parallelism passes its offset).
// Angles are computed in double and only then cast, so positions up to ~1e6 stay accurate in
// float (a float angle pos·f_0 = 1e6 would be off by ~0.03 rad).
#include <cstdint>

namespace strata {

// x: [B, Tn, Hx, dh] (Tn tokens; token t at position pos0 + t), rotated in place; dh even.
template <class T>
void rope_forward(T* x, int64_t B, int64_t Tn, int64_t Hx, int64_t dh, int64_t pos0, float theta);

// dx: [B, Tn, Hx, dh], in place: the adjoint (= inverse) rotation, so dx ← Rᵀ dx.
template <class T>
void rope_backward(T* dx, int64_t B, int64_t Tn, int64_t Hx, int64_t dh, int64_t pos0, float theta);

}  // namespace strata
