#pragma once
// Global-norm gradient clipping, split so it works across buffers and ranks:
//   1. sum_of_squares over each of this rank's gradient buffers (or shards), added in a fixed
//      order in double by the caller;
//   2. the caller all-reduces that double over the ranks holding distinct gradient pieces (dp
//      under ZeRO-2/3, pp, ...) — after the dp gradient all-reduce, replicas hold the same
//      gradients and must not be counted twice;
//   3. clip_coefficient(total, max_norm), which the optimizer step applies to each gradient as
//      it reads it (Optimizer::step's grad_scale; scale() for a buffer on its own).
// sum_of_squares is bit-identical for any OpenMP thread count, so a run's clipping, and thus its
// losses, do not depend on threads per rank.
#include <cstdint>

namespace strata {

// Sum of g[i]^2 in double. The range is cut into fixed-size blocks whose partial sums are added
// in block order, so the result depends on n alone, never on the number of threads.
double sum_of_squares(const float* g, int64_t n);

// g[i] *= s.
void scale(float* g, int64_t n, float s);

// min(1, max_norm / (sqrt(global_sq_sum) + 1e-6)), as torch.nn.utils.clip_grad_norm_;
// 1 when max_norm <= 0 (clipping off). A NaN sum gives NaN, an infinite one 0, as in torch: the
// caller should check the norm for finiteness and skip or stop on a bad step.
float clip_coefficient(double global_sq_sum, float max_norm);

}  // namespace strata
