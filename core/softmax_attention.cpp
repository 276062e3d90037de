#include "core/softmax_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/omp_guard.h"
#include "core/threads.h"
#include "core/vexp.h"

namespace strata {

void check_softmax_attention_shape(const SoftmaxAttentionShape& s) {
  STRATA_CHECK(s.B >= 0 && s.Tq >= 0 && s.Tk >= 0 && s.dh >= 1, "bad softmax attention shape");
  STRATA_CHECK(s.H >= 1 && s.Hkv >= 1 && s.H % s.Hkv == 0, "H must be a multiple of Hkv");
  // With q_pos0 >= k_pos0 query 0 sees key 0, so no row of the softmax is empty (an empty row
  // would be 0/0). Checked outside the OpenMP regions, where throwing is safe.
  STRATA_CHECK(s.Tq == 0 || (s.q_pos0 >= s.k_pos0 && s.Tk >= 1),
               "a query would see no key (need q_pos0 >= k_pos0 and Tk >= 1)");
}

namespace {

// sum_j exp(p[j] - mx) for j < n; float through core/vexp.h (vectorised, the same bits on every
// code path), double (the finite-difference reference) through std::exp.
float exp_sum(const float* p, int64_t n, float mx, std::vector<float>& scratch) {
  return static_cast<float>(exp_shift_sum(p, scratch.data(), n, mx));
}
double exp_sum(const double* p, int64_t n, double mx, std::vector<double>&) {
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(p[j] - mx);
  return sum;
}
// p[j] = exp(p[j] - l) for j < n
void exp_shift(float* p, int64_t n, float l) { exp_shift_scale(p, n, l, 1.f); }
void exp_shift(double* p, int64_t n, double l) {
  for (int64_t j = 0; j < n; ++j) p[j] = std::exp(p[j] - l);
}

}  // namespace

template <class T>
void softmax_attention_forward(const SoftmaxAttentionShape& s, const T* q, const T* k, const T* v,
                               T* o, T* lse) {
  check_softmax_attention_shape(s);
  const int64_t B = s.B, Tq = s.Tq, Tk = s.Tk, H = s.H, Hkv = s.Hkv, dh = s.dh;
  const int64_t group = H / Hkv;
  const int64_t ldq = H * dh, ldk = Hkv * dh;  // row strides of q/o and k/v
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  const int64_t tile = kSoftmaxQueryTile;
  const bool par = worth_threads(B * H * Tq * Tk * dh);
  OmpExceptionGuard guard;
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      guard.run([&] {
        const int64_t g = h / group;
        const T* K = k + (b * Tk * Hkv + g) * dh;  // [Tk, dh], row stride ldk
        const T* V = v + (b * Tk * Hkv + g) * dh;  // [Tk, dh], row stride ldk
        T* L = lse + (b * H + h) * Tq;             // [Tq]
        std::vector<T> P(tile * Tk);               // [m, nk] scores, then probabilities
        std::vector<T> scratch(Tk);
        for (int64_t i0 = 0; i0 < Tq; i0 += tile) {
          const int64_t m = std::min(tile, Tq - i0);
          const int64_t nk = softmax_tile_keys(s, i0, m);
          const int64_t ofs = ((b * Tq + i0) * H + h) * dh;
          gemm(false, true, m, nk, dh, scale, q + ofs, ldq, K, ldk, T(0), P.data(), nk);
          for (int64_t i = 0; i < m; ++i) {
            T* p = P.data() + i * nk;
            const int64_t jmax = softmax_last_key(s, i0 + i, nk);
            const T mx = max_of(p, jmax + 1);  // core/vexp.h
            const T l = mx + std::log(exp_sum(p, jmax + 1, mx, scratch));
            L[i0 + i] = l;
            // exp(score - lse), exactly what the backward recomputes; masked keys get exact 0s
            // so they contribute nothing to P V.
            exp_shift(p, jmax + 1, l);
            for (int64_t j = jmax + 1; j < nk; ++j) p[j] = T(0);
          }
          gemm(false, false, m, dh, nk, T(1), P.data(), nk, V, ldk, T(0), o + ofs, ldq);
        }
      });
  guard.rethrow();
}

template <class T>
void softmax_attention_backward(const SoftmaxAttentionShape& s, const T* q, const T* k, const T* v,
                                const T* o, const T* lse, const T* dout, T* dq, T* dk, T* dv) {
  check_softmax_attention_shape(s);
  const int64_t B = s.B, Tq = s.Tq, Tk = s.Tk, H = s.H, Hkv = s.Hkv, dh = s.dh;
  const int64_t group = H / Hkv;
  const int64_t ldq = H * dh, ldk = Hkv * dh;
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  const int64_t tile = kSoftmaxQueryTile;
  // Parallel over (batch, kv head), not (batch, head): the heads of one group all accumulate
  // into the same dk/dv rows, so one thread owns a group and walks its heads in order. That
  // needs no atomics or per-head copies and keeps the sum order (and the result) deterministic.
  const bool par = worth_threads(2 * B * H * Tq * Tk * dh);
  OmpExceptionGuard guard;
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < Hkv; ++g)
      guard.run([&] {
        const int64_t kofs = (b * Tk * Hkv + g) * dh;
        const T* K = k + kofs;  // [Tk, dh], row stride ldk
        const T* V = v + kofs;
        T *dK = dk + kofs, *dV = dv + kofs;  // [Tk, dh], row stride ldk
        for (int64_t j = 0; j < Tk; ++j)
          for (int64_t c = 0; c < dh; ++c) dK[j * ldk + c] = dV[j * ldk + c] = T(0);
        std::vector<T> P(tile * Tk);   // [m, nk] probabilities
        std::vector<T> dP(tile * Tk);  // [m, nk] grad w.r.t. P, then w.r.t. the scaled scores
        std::vector<T> D(tile);        // [m] rowsum(dO ⊙ O) = Σ_j P_ij dP_ij
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const T* L = lse + (b * H + h) * Tq;  // [Tq]
          for (int64_t i0 = 0; i0 < Tq; i0 += tile) {
            const int64_t m = std::min(tile, Tq - i0);
            const int64_t nk = softmax_tile_keys(s, i0, m);
            const int64_t ofs = ((b * Tq + i0) * H + h) * dh;
            const T* Q = q + ofs;  // [m, dh], row stride ldq
            const T* O = o + ofs;
            const T* dO = dout + ofs;  // [m, dh], row stride ldq
            T* dQ = dq + ofs;          // [m, dh], row stride ldq
            // Recompute P = exp(scale Q Kᵀ - lse), masked.
            gemm(false, true, m, nk, dh, scale, Q, ldq, K, ldk, T(0), P.data(), nk);
            for (int64_t i = 0; i < m; ++i) {
              T* p = P.data() + i * nk;
              const int64_t jmax = softmax_last_key(s, i0 + i, nk);
              exp_shift(p, jmax + 1, L[i0 + i]);
              for (int64_t j = jmax + 1; j < nk; ++j) p[j] = T(0);
              T d = T(0);
              for (int64_t c = 0; c < dh; ++c) d += dO[i * ldq + c] * O[i * ldq + c];
              D[i] = d;
            }
            // dV += Pᵀ dO
            gemm(true, false, nk, dh, m, T(1), P.data(), nk, dO, ldq, T(1), dV, ldk);
            // dP = dO Vᵀ;  dScore = scale · P ⊙ (dP − D)  (softmax backward; the scale is the
            // chain rule through score = scale · q·k, folded in here once)
            gemm(false, true, m, nk, dh, T(1), dO, ldq, V, ldk, T(0), dP.data(), nk);
            for (int64_t i = 0; i < m; ++i)
              for (int64_t j = 0; j < nk; ++j) {
                T& x = dP[i * nk + j];
                x = scale * P[i * nk + j] * (x - D[i]);
              }
            // dQ = dScore K;  dK += dScoreᵀ Q
            gemm(false, false, m, dh, nk, T(1), dP.data(), nk, K, ldk, T(0), dQ, ldq);
            gemm(true, false, nk, dh, m, T(1), dP.data(), nk, Q, ldq, T(1), dK, ldk);
          }
        }
      });
  guard.rethrow();
}

#define STRATA_INSTANTIATE(T)                                                                   \
  template void softmax_attention_forward<T>(const SoftmaxAttentionShape&, const T*, const T*,  \
                                             const T*, T*, T*);                                 \
  template void softmax_attention_backward<T>(const SoftmaxAttentionShape&, const T*, const T*, \
                                              const T*, const T*, const T*, const T*, T*, T*, T*);
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
#undef STRATA_INSTANTIATE

}  // namespace strata
