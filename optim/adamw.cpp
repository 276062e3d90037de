#include "optim/adamw.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/bf16.h"
#include "core/error.h"
#include "core/vexp.h"

#if defined(__AVX512F__) || defined(STRATA_VEC16)
#include <immintrin.h>
#endif

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

// One element in PyTorch's order. __builtin_sqrtf, not std::sqrt: the optimize pragma above
// stops <cmath>'s wrapper from inlining.
inline void update_one(float* p, const float* g, float* m, float* v, int64_t i, const Coeffs& c) {
  const float gi = g[i] * c.grad_scale;
  const float pi = p[i] * c.keep;
  const float mi = m[i] + c.one_minus_b1 * (gi - m[i]);
  const float vi = v[i] * c.b2 + (c.one_minus_b2 * gi) * gi;
  const float denom = __builtin_sqrtf(vi) / c.bc2_sqrt + c.eps;
  m[i] = mi;
  v[i] = vi;
  p[i] = pi + (c.neg_step_size * mi) / denom;
}

// [begin, end) on one thread. GCC will not auto-vectorise the loop (sqrtf may set errno, and
// -fno-math-errno cannot be set per file), so the AVX-512 (or AVX2) body is spelled out: the same
// operations in the same order, each IEEE-rounded, hence bit-identical to update_one. With p16
// the updated parameters are also stored rounded to bf16 (the bf16 precision's copy); with gz
// (g itself, writable) each gradient is set to zero once read.
void update_range(float* p, const float* g, float* m, float* v, bf16* p16, float* gz, int64_t begin,
                  int64_t end, const Coeffs& c) {
  int64_t i = begin;
#if defined(__AVX512F__)
  const __m512 keep = _mm512_set1_ps(c.keep), omb1 = _mm512_set1_ps(c.one_minus_b1);
  const __m512 b2 = _mm512_set1_ps(c.b2), omb2 = _mm512_set1_ps(c.one_minus_b2);
  const __m512 bc2 = _mm512_set1_ps(c.bc2_sqrt), eps = _mm512_set1_ps(c.eps);
  const __m512 nss = _mm512_set1_ps(c.neg_step_size), gs = _mm512_set1_ps(c.grad_scale);
  for (; i + 16 <= end; i += 16) {
    const __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), gs);
    if (gz) _mm512_storeu_ps(gz + i, _mm512_setzero_ps());
    const __m512 m0 = _mm512_loadu_ps(m + i);
    const __m512 pi = _mm512_mul_ps(_mm512_loadu_ps(p + i), keep);
    const __m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(omb1, _mm512_sub_ps(gi, m0)));
    const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2),
                                    _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    // maskz (all lanes) rather than _mm512_sqrt_ps, whose undefined-vector operand trips GCC 12
    // -Wmaybe-uninitialized.
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_maskz_sqrt_ps(0xFFFF, vi), bc2), eps);
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    const __m512 pn = _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(nss, mi), denom));
    _mm512_storeu_ps(p + i, pn);
    if (p16) vstore(p16 + i, Vec16(pn));  // core/vexp.h: fp32_to_bf16 on 16 lanes
  }
#elif defined(STRATA_VEC16)
  // The same on AVX2 (core/vec16_avx2.h), 8 lanes at a time, 16 per step for the bf16 store.
  const __m256 keep = _mm256_set1_ps(c.keep), omb1 = _mm256_set1_ps(c.one_minus_b1);
  const __m256 b2 = _mm256_set1_ps(c.b2), omb2 = _mm256_set1_ps(c.one_minus_b2);
  const __m256 bc2 = _mm256_set1_ps(c.bc2_sqrt), eps = _mm256_set1_ps(c.eps);
  const __m256 nss = _mm256_set1_ps(c.neg_step_size), gs = _mm256_set1_ps(c.grad_scale);
  for (; i + 16 <= end; i += 16) {
    __m256 pn[2];
    for (int h = 0; h < 2; ++h) {
      const int64_t j = i + 8 * h;
      const __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + j), gs);
      if (gz) _mm256_storeu_ps(gz + j, _mm256_setzero_ps());
      const __m256 m0 = _mm256_loadu_ps(m + j);
      const __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + j), keep);
      const __m256 mi = _mm256_add_ps(m0, _mm256_mul_ps(omb1, _mm256_sub_ps(gi, m0)));
      const __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + j), b2),
                                      _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
      const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2), eps);
      _mm256_storeu_ps(m + j, mi);
      _mm256_storeu_ps(v + j, vi);
      pn[h] = _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(nss, mi), denom));
      _mm256_storeu_ps(p + j, pn[h]);
    }
    if (p16) vstore(p16 + i, Vec16(pn[0], pn[1]));
  }
#endif
  for (; i < end; ++i) {
    update_one(p, g, m, v, i, c);
    if (gz) gz[i] = 0.f;
    if (p16) p16[i] = fp32_to_bf16(p[i]);
  }
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
