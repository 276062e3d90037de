#include "optim/adamw.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/bf16.h"
#include "core/error.h"
#include "core/vexp.h"

// Every multiply and add rounds on its own (see the header).
#include "optim/no_fp_contract.h"

namespace strata {

namespace {
// Below this many elements a parallel region costs more than it saves (norm gains are ~1e3).
constexpr int64_t kParallelMin = 1 << 15;

// The per-step scalars of one segment's update.
struct Coeffs {
  float keep;  // 1 - lr*wd on decay segments, 1 elsewhere (x * 1.0f is exact)
  float one_minus_b1, b2, one_minus_b2, bc2_sqrt, eps, neg_step_size;
  float grad_scale;  // the clipping coefficient (x * 1.0f is exact)
};

// [begin, end) on one thread, 16 elements at a time where there is a vector lane (core/vexp.h)
// and one at a time for the tail: PyTorch's operations in PyTorch's order, each IEEE-rounded
// (no FMAs, see the header), hence the same bits on either lane, any CPU and thread count.
// Spelled out because GCC will not auto-vectorise the loop (sqrtf may set errno, and
// -fno-math-errno cannot be set per file). With p16 the updated parameters are also stored
// rounded to bf16 (the bf16 precision's copy); with gz (g itself, writable) each gradient is
// set to zero once read.
void update_range(float* p, const float* g, float* m, float* v, bf16* p16, float* gz, int64_t begin,
                  int64_t end, const Coeffs& c) {
  for_lanes(begin, end, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    const V gi = vload(g + i, lane) * V(c.grad_scale);
    if (gz) vstore(gz + i, V(0.f));
    const V m0 = vload(m + i, lane);
    const V pi = vload(p + i, lane) * V(c.keep);
    const V mi = m0 + V(c.one_minus_b1) * (gi - m0);
    const V vi = vload(v + i, lane) * V(c.b2) + (V(c.one_minus_b2) * gi) * gi;
    const V denom = vsqrt(vi) / V(c.bc2_sqrt) + V(c.eps);
    vstore(m + i, mi);
    vstore(v + i, vi);
    const V pn = pi + (V(c.neg_step_size) * mi) / denom;
    vstore(p + i, pn);
    if (p16) vstore(p16 + i, pn);
  });
}
}  // namespace

AdamW::AdamW(int64_t n, const AdamWOptions& options)
    : options_(options),
      exp_avg_(n, MemCategory::optimizer),
      exp_avg_sq_(n, MemCategory::optimizer) {
  if (!(options.beta1 >= 0.f && options.beta1 < 1.f))
    throw InputError("optim.beta1: must be in [0, 1), got " + std::to_string(options.beta1));
  if (!(options.beta2 >= 0.f && options.beta2 < 1.f))
    throw InputError("optim.beta2: must be in [0, 1), got " + std::to_string(options.beta2));
  if (!(options.eps > 0.f))
    throw InputError("optim.eps: must be > 0, got " + std::to_string(options.eps));
  if (!(options.weight_decay >= 0.f))
    throw InputError("optim.weight_decay: must be >= 0, got " +
                     std::to_string(options.weight_decay));
}

void AdamW::step(float* params, const float* grads, int64_t n,
                 const std::vector<DecaySegment>& segments, float lr, float grad_scale) {
  STRATA_CHECK(n == exp_avg_.size(), "AdamW built for " + std::to_string(exp_avg_.size()) +
                                         " elements, stepped on " + std::to_string(n));
  check_segments(segments, n);
  ++steps_;

  // Scalars in double, rounded once to float: what PyTorch does with its Python-float scalars.
  const double t = static_cast<double>(steps_);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(options_.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(options_.beta2), t);
  const float neg_step_size = static_cast<float>(-(static_cast<double>(lr) / bias_correction1));
  const float bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float one_minus_b1 = static_cast<float>(1.0 - options_.beta1);
  const float one_minus_b2 = static_cast<float>(1.0 - options_.beta2);
  const float decay_factor =
      static_cast<float>(1.0 - static_cast<double>(lr) * options_.weight_decay);

  float* m = exp_avg_.data();
  float* v = exp_avg_sq_.data();
  float* gz = take_grads_to_clear(grads);
  for (const DecaySegment& seg : segments) {
    const Coeffs c{seg.decay ? decay_factor : 1.f,
                   one_minus_b1,
                   options_.beta2,
                   one_minus_b2,
                   bc2_sqrt,
                   options_.eps,
                   neg_step_size,
                   grad_scale};
    const int64_t begin = seg.offset;
    const int64_t end = seg.offset + seg.numel;
    if (seg.numel < kParallelMin) {
      update_range(params, grads, m, v, bf16_out_, gz, begin, end, c);
      continue;
    }
    // Contiguous per-thread chunks (multiples of 16 elements). Element-wise only, so the result
    // does not depend on the thread count.
#pragma omp parallel
    {
      const int64_t nt = omp_get_num_threads();
      const int64_t chunk = ((seg.numel + nt - 1) / nt + 15) & ~int64_t{15};
      const int64_t lo = std::min(end, begin + chunk * omp_get_thread_num());
      update_range(params, grads, m, v, bf16_out_, gz, lo, std::min(end, lo + chunk), c);
    }
  }
  bf16_out_ = nullptr;
}

std::vector<std::pair<std::string, FloatBuffer*>> AdamW::state() {
  return {{"exp_avg", &exp_avg_}, {"exp_avg_sq", &exp_avg_sq_}};
}

}  // namespace strata
