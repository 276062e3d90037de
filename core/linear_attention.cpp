#include "core/linear_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/gemm.h"
#include "core/omp_guard.h"
#include "core/threads.h"

namespace strata {
namespace {

// pw[e] = γ^e for e = 0..C. One pow per exponent (no running product), in the scalar type, so
// the error does not grow with the exponent and float runs entirely in fp32.
template <class T>
void decay_powers(T gamma, int64_t C, T* pw) {
  for (int64_t e = 0; e <= C; ++e) pw[e] = std::pow(gamma, static_cast<T>(e));
}

// A[n,n] (contiguous) = (X Yᵀ) ⊙ D with D[i,j] = γ^(i-j) for j <= i, else 0. X, Y: [n, dh] with
// row stride ld. The upper triangle is computed by the GEMM and then zeroed: one dense GEMM is
// cheaper than a triangular loop at these sizes.
template <class T>
void masked_scores(int64_t n, int64_t dh, const T* X, const T* Y, int64_t ld, const T* pw, T* A) {
  gemm(false, true, n, n, dh, T(1), X, ld, Y, ld, T(0), A, n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A[i * n + j] = j <= i ? A[i * n + j] * pw[i - j] : T(0);
}

// X[i, :] *= f(i) for the n rows of a [n, cols] matrix with row stride ld.
template <class T, class F>
void scale_rows(T* X, int64_t n, int64_t cols, int64_t ld, F f) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = f(i);
    for (int64_t c = 0; c < cols; ++c) X[i * ld + c] *= a;
  }
}

// Y[n, cols] (contiguous) = diag(f) X, X with row stride ld.
template <class T, class F>
void scaled_copy(const T* X, int64_t n, int64_t cols, int64_t ld, F f, T* Y) {
  for (int64_t i = 0; i < n; ++i) {
    const T a = f(i);
    for (int64_t c = 0; c < cols; ++c) Y[i * cols + c] = a * X[i * ld + c];
  }
}

// S[dh,dh] <- γ^n S + Kᵀ diag(μ) V for one chunk of n rows (μ_j = γ^(n-1-j)).
// Vm: [n, dh] scratch.
template <class T>
void advance_state(int64_t n, int64_t dh, const T* K, const T* V, int64_t ld, const T* pw, T* S,
                   T* Vm) {
  auto mu = [&](int64_t j) { return pw[n - 1 - j]; };
  scaled_copy(V, n, dh, ld, mu, Vm);
  gemm(true, false, dh, dh, n, T(1), K, ld, Vm, dh, pw[n], S, dh);
}

void check_shape(const LinearAttentionShape& s) {
  STRATA_CHECK(s.B >= 0 && s.T >= 0 && s.H >= 1 && s.dh >= 1, "bad linear attention shape");
  STRATA_CHECK(s.chunk >= 1, "linear attention chunk must be >= 1");
}

// A chunk longer than the sequence is the sequence: the tiles are sized by it, so a chunk_size
// far above seq_len would only allocate and multiply padding (the math is the same).
int64_t effective_chunk(const LinearAttentionShape& s) {
  return std::max<int64_t>(1, std::min(s.chunk, s.T));
}

}  // namespace

std::vector<float> linear_attention_gammas(int64_t H, bool retnet) {
  std::vector<float> g(static_cast<size_t>(H), 1.f);
  if (retnet)
    for (int64_t h = 0; h < H; ++h) g[h] = static_cast<float>(1.0 - std::ldexp(1.0, -5 - int(h)));
  return g;
}

template <class T>
void linear_attention_forward(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                              const T* gamma, T* o, const std::type_identity_t<T>* state_in,
                              std::type_identity_t<T>* state_out) {
  check_shape(s);
  const int64_t B = s.B, Tn = s.T, H = s.H, dh = s.dh, C = effective_chunk(s);
  const int64_t ld = H * dh;  // row stride between consecutive tokens of one head
  const bool par = worth_threads(B * H * Tn * (C + 2 * dh) * dh);
  OmpExceptionGuard guard;
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      guard.run([&] {
        std::vector<T> S(dh * dh);  // [dh, dh] running state S_prev
        std::vector<T> A(C * C);    // [n, n] masked intra-chunk scores
        std::vector<T> Vm(C * dh);  // [n, dh] μ-scaled values
        std::vector<T> pw(C + 1);   // [C+1] γ^e
        decay_powers(gamma[h], C, pw.data());
        const int64_t sofs = (b * H + h) * dh * dh;
        // Without state_in the first chunk has no inter-chunk term; skip its GEMM.
        bool have_state = state_in != nullptr;
        if (have_state) std::copy(state_in + sofs, state_in + sofs + dh * dh, S.begin());
        for (int64_t t0 = 0; t0 < Tn; t0 += C) {
          const int64_t n = std::min(C, Tn - t0);
          const int64_t ofs = ((b * Tn + t0) * H + h) * dh;
          const T *Q = q + ofs, *K = k + ofs, *V = v + ofs;
          T* O = o + ofs;
          masked_scores(n, dh, Q, K, ld, pw.data(), A.data());
          // O = diag(λ) Q S_prev + ((Q Kᵀ) ⊙ D) V, λ_i = γ^(i+1).
          T beta = T(0);
          if (have_state) {
            gemm(false, false, n, dh, dh, T(1), Q, ld, S.data(), dh, T(0), O, ld);
            scale_rows(O, n, dh, ld, [&](int64_t i) { return pw[i + 1]; });
            beta = T(1);
          }
          gemm(false, false, n, dh, n, T(1), A.data(), n, V, ld, beta, O, ld);
          advance_state(n, dh, K, V, ld, pw.data(), S.data(), Vm.data());
          have_state = true;
        }
        if (state_out) std::copy(S.begin(), S.end(), state_out + sofs);
      });
  guard.rethrow();
}

template <class T>
void linear_attention_backward(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                               const T* gamma, const T* dout, T* dq, T* dk, T* dv,
                               const std::type_identity_t<T>* state_in,
                               const std::type_identity_t<T>* dstate_out,
                               std::type_identity_t<T>* dstate_in) {
  check_shape(s);
  const int64_t B = s.B, Tn = s.T, H = s.H, dh = s.dh, C = effective_chunk(s);
  const int64_t ld = H * dh;
  const int64_t nchunks = (Tn + C - 1) / C;
  const bool par = worth_threads(B * H * Tn * (C + 2 * dh) * dh * 2);
  OmpExceptionGuard guard;
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      guard.run([&] {
        std::vector<T> states(nchunks * dh * dh);  // [nchunks, dh, dh] S_prev of every chunk
        std::vector<T> dS(dh * dh);                // [dh, dh] grad w.r.t. the current S_next
        std::vector<T> A(C * C);                   // [n, n] (Q Kᵀ) ⊙ D
        std::vector<T> G(C * C);                   // [n, n] (dO Vᵀ) ⊙ D
        std::vector<T> X(C * dh);                  // [n, dh] scaled-row scratch
        std::vector<T> pw(C + 1);                  // [C+1] γ^e
        decay_powers(gamma[h], C, pw.data());
        const int64_t sofs = (b * H + h) * dh * dh;

        // Recompute the chunk-boundary states: cheap (one dh×dh×n GEMM per chunk) next to
        // storing T/C states per layer in the activation store.
        std::vector<T> S(dh * dh);  // [dh, dh]
        if (state_in) std::copy(state_in + sofs, state_in + sofs + dh * dh, S.begin());
        for (int64_t c = 0; c < nchunks; ++c) {
          const int64_t t0 = c * C, n = std::min(C, Tn - t0);
          const int64_t ofs = ((b * Tn + t0) * H + h) * dh;
          std::copy(S.begin(), S.end(), states.begin() + c * dh * dh);
          advance_state(n, dh, k + ofs, v + ofs, ld, pw.data(), S.data(), X.data());
        }

        if (dstate_out) std::copy(dstate_out + sofs, dstate_out + sofs + dh * dh, dS.begin());
        for (int64_t c = nchunks - 1; c >= 0; --c) {
          const int64_t t0 = c * C, n = std::min(C, Tn - t0);
          const int64_t ofs = ((b * Tn + t0) * H + h) * dh;
          const T *Q = q + ofs, *K = k + ofs, *V = v + ofs, *dO = dout + ofs;
          T *dQ = dq + ofs, *dK = dk + ofs, *dV = dv + ofs;
          const T* Sp = states.data() + c * dh * dh;
          auto lambda = [&](int64_t i) { return pw[i + 1]; };
          auto mu = [&](int64_t j) { return pw[n - 1 - j]; };
          masked_scores(n, dh, Q, K, ld, pw.data(), A.data());
          masked_scores(n, dh, dO, V, ld, pw.data(), G.data());
          // dQ = diag(λ) dO S_prevᵀ + G K
          gemm(false, true, n, dh, dh, T(1), dO, ld, Sp, dh, T(0), dQ, ld);
          scale_rows(dQ, n, dh, ld, lambda);
          gemm(false, false, n, dh, n, T(1), G.data(), n, K, ld, T(1), dQ, ld);
          // dK = Gᵀ Q + diag(μ) V dSᵀ
          gemm(false, true, n, dh, dh, T(1), V, ld, dS.data(), dh, T(0), dK, ld);
          scale_rows(dK, n, dh, ld, mu);
          gemm(true, false, n, dh, n, T(1), G.data(), n, Q, ld, T(1), dK, ld);
          // dV = Aᵀ dO + diag(μ) K dS
          gemm(false, false, n, dh, dh, T(1), K, ld, dS.data(), dh, T(0), dV, ld);
          scale_rows(dV, n, dh, ld, mu);
          gemm(true, false, n, dh, n, T(1), A.data(), n, dO, ld, T(1), dV, ld);
          // dS_prev = γ^n dS + Qᵀ diag(λ) dO  (after dK, dV: they need this chunk's dS)
          scaled_copy(dO, n, dh, ld, lambda, X.data());
          gemm(true, false, dh, dh, n, T(1), Q, ld, X.data(), dh, pw[n], dS.data(), dh);
        }
        if (dstate_in) std::copy(dS.begin(), dS.end(), dstate_in + sofs);
      });
  guard.rethrow();
}

template <class T>
void linear_attention_reference(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                                const T* gamma, T* o, const std::type_identity_t<T>* state_in,
                                std::type_identity_t<T>* state_out) {
  const int64_t B = s.B, Tn = s.T, H = s.H, dh = s.dh;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t sofs = (b * H + h) * dh * dh;
      std::vector<T> S(dh * dh);  // [dh, dh]
      if (state_in) std::copy(state_in + sofs, state_in + sofs + dh * dh, S.begin());
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t ofs = ((b * Tn + t) * H + h) * dh;
        for (int64_t i = 0; i < dh; ++i)  // S = γ S + k_tᵀ v_t
          for (int64_t j = 0; j < dh; ++j)
            S[i * dh + j] = gamma[h] * S[i * dh + j] + k[ofs + i] * v[ofs + j];
        for (int64_t j = 0; j < dh; ++j) {  // o_t = q_t S
          T acc = T(0);
          for (int64_t i = 0; i < dh; ++i) acc += q[ofs + i] * S[i * dh + j];
          o[ofs + j] = acc;
        }
      }
      if (state_out) std::copy(S.begin(), S.end(), state_out + sofs);
    }
}

#define STRATA_INSTANTIATE(T)                                                                    \
  template void linear_attention_forward<T>(const LinearAttentionShape&, const T*, const T*,     \
                                            const T*, const T*, T*, const T*, T*);               \
  template void linear_attention_backward<T>(const LinearAttentionShape&, const T*, const T*,    \
                                             const T*, const T*, const T*, T*, T*, T*, const T*, \
                                             const T*, T*);                                      \
  template void linear_attention_reference<T>(const LinearAttentionShape&, const T*, const T*,   \
                                              const T*, const T*, T*, const T*, T*);
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
#undef STRATA_INSTANTIATE

}  // namespace strata
