#include "core/linear_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/batched_gemm.h"
#include "core/error.h"
#include "core/head_chunks.h"

namespace strata {
namespace {

void check_shape(const LinearAttentionShape& s) {
  STRATA_CHECK(s.B >= 0 && s.T >= 0 && s.H >= 1 && s.dh >= 1, "bad linear attention shape");
  STRATA_CHECK(s.chunk >= 1, "linear attention chunk must be >= 1");
}

// A chunk longer than the sequence is the sequence: the tiles are sized by it, so a chunk_size
// far above seq_len would only allocate and multiply padding (the math is the same).
int64_t effective_chunk(const LinearAttentionShape& s) {
  return std::max<int64_t>(1, std::min(s.chunk, s.T));
}

// Without tokens the state leaves as it came: out = in (0 without one), when out is wanted.
template <class T>
void pass_through(const LinearAttentionShape& s, const T* in, T* out) {
  if (!out) return;
  const int64_t n = s.B * s.H * s.dh * s.dh;
  if (in)
    std::copy(in, in + n, out);
  else
    std::fill(out, out + n, T(0));
}

// pw[h][e] = γ_h^e for e = 0..C, [H, C+1]. One pow per exponent (no running product), in the
// scalar type, so the error does not grow with the exponent and float runs entirely in fp32.
template <class T>
std::vector<T> decay_powers(const T* gamma, int64_t H, int64_t C) {
  std::vector<T> pw(static_cast<size_t>(H * (C + 1)));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t e = 0; e <= C; ++e) pw[h * (C + 1) + e] = std::pow(gamma[h], static_cast<T>(e));
  return pw;
}

// The row scales of the chunked form, for row i of chunk c of head h (n = the chunk's real
// rows): λ_i = γ^(i+1) weighs the state entering the chunk, μ_i = γ^(n-1-i) a row's share of
// the state leaving it (0 on padding rows).
template <class T>
struct RowDecay {
  const HeadChunks& L;
  const std::vector<T>& pw;
  T lambda(int64_t h, int64_t, int64_t i) const { return pw[h * (L.C + 1) + i + 1]; }
  T mu(int64_t h, int64_t c, int64_t i) const {
    const int64_t n = L.rows_of(c);
    return i < n ? pw[h * (L.C + 1) + n - 1 - i] : T(0);
  }
  T full(int64_t h, int64_t c) const { return pw[h * (L.C + 1) + L.rows_of(c)]; }  // γ^n
};

// A decayed running sum over the chunks of every (sequence, head), in place: chunk c's update
// u_c is replaced by the running value it meets, in fp32 and converted into `xp`, and the value
// moves on as run = γ^n run + u_c (n the chunk's rows); `init` (or 0) is where it starts, `last`
// (when wanted) gets where it ends. Forwards this gives the states entering the chunks from
// u_c = K_cᵀ diag(μ) V_c (init state_in, last state_out); backwards the gradients w.r.t. the
// states leaving them from u_c = Q_cᵀ diag(λ) dO_c (init dstate_out, last dstate_in). Chunks in
// order: the same bits for any thread count.
template <class T, class P>
void scan_chunks(const HeadChunks& L, const RowDecay<T>& dec, bool backwards, T* u, P* xp,
                 const T* init, T* last) {
  const int64_t d2 = L.dh * L.dh;
#pragma omp parallel for schedule(static) if (L.threads())
  for (int64_t bh = 0; bh < L.B * L.H; ++bh) {
    std::vector<T> run(static_cast<size_t>(d2), T(0));  // [dh, dh]
    if (init) std::copy(init + bh * d2, init + (bh + 1) * d2, run.begin());
    for (int64_t k = 0; k < L.nc; ++k) {
      const int64_t c = backwards ? L.nc - 1 - k : k;
      T* x = u + (bh * L.nc + c) * d2;
      P* xc = xp + (bh * L.nc + c) * d2;
      const T g = dec.full(bh % L.H, c);
      for (int64_t e = 0; e < d2; ++e) {
        const T update = x[e];
        x[e] = run[e];
        xc[e] = operand_cast<P>(run[e]);
        run[e] = g * run[e] + update;
      }
    }
    if (last) std::copy(run.begin(), run.end(), last + bh * d2);
  }
}

// The operands every pass needs: k, v packed, the μ-scaled values, and the chunk-entry states.
// k and v are stored as In: T, or bf16 under the bf16 precision (packed as they are).
template <class T, class P>
struct ChunkStates {
  Scratch<P> K, V, Sp;
  Scratch<T> S;  // fp32 states (overwritten by callers as scratch of the same size)
  template <class In>
  ChunkStates(const HeadChunks& L, const RowDecay<T>& dec, const In* k, const In* v,
              const T* state_in, T* state_out)
      : K(packed_scratch<P>(L)),
        V(packed_scratch<P>(L)),
        Sp(L.matrices() * L.dh * L.dh),
        S(L.matrices() * L.dh * L.dh) {
    pack_head_chunks(L, k, K.data());
    pack_head_chunks(L, v, V.data());
    Scratch<P> Vm = packed_scratch<P>(L);
    pack_head_chunks(L, v, Vm.data(),
                     [&](int64_t h, int64_t c, int64_t i) { return dec.mu(h, c, i); });
    batched_gemm(true, false, L.matrices(), L.dh, L.dh, L.C, K.data(), Vm.data(), T(0), S.data());
    scan_chunks(L, dec, false, S.data(), Sp.data(), state_in, state_out);
  }
};

// A[bh, c] = (X_c Y_cᵀ) ⊙ D, the decay-masked scores, in the operand type.
template <class T, class P>
Scratch<P> masked_scores(const HeadChunks& L, const std::vector<T>& pw, const P* X, const P* Y) {
  Scratch<T> raw(L.matrices() * L.C * L.C);
  batched_gemm(false, true, L.matrices(), L.C, L.C, L.dh, X, Y, T(0), raw.data());
  Scratch<P> out(L.matrices() * L.C * L.C);
  decay_mask(L, pw, raw.data(), out.data());
  return out;
}

// O = diag(λ) Q S_prev + ((Q Kᵀ) ⊙ D) V per chunk, every chunk at once. q, k, v stored as In
// (T, or the bf16 operands themselves).
template <class T, class P, class In>
void forward_chunks(const LinearAttentionShape& s, const In* q, const In* k, const In* v,
                    const T* gamma, T* o, const T* state_in, T* state_out) {
  const HeadChunks L(s.B, s.T, s.H, s.dh, effective_chunk(s));
  if (L.matrices() == 0) {  // no tokens: the state passes through
    pass_through(s, state_in, state_out);
    return;
  }
  const std::vector<T> pw = decay_powers(gamma, s.H, L.C);
  const RowDecay<T> dec{L, pw};
  ChunkStates<T, P> st(L, dec, k, v, state_in, state_out);
  Scratch<P> Q = packed_scratch<P>(L);
  pack_head_chunks(L, q, Q.data());
  const Scratch<P> A = masked_scores(L, pw, Q.data(), st.K.data());
  Scratch<T> inter(L.elements()), intra(L.elements());
  batched_gemm(false, false, L.matrices(), L.C, L.dh, L.dh, Q.data(), st.Sp.data(), T(0),
               inter.data());
  batched_gemm(false, false, L.matrices(), L.C, L.dh, L.C, A.data(), st.V.data(), T(0),
               intra.data());
  unpack_head_chunks(
      L, inter.data(), [&](int64_t h, int64_t c, int64_t i) { return dec.lambda(h, c, i); },
      intra.data(), o);
}

// dQ = diag(λ) dO S_prevᵀ + G K,  dK = Gᵀ Q + diag(μ) V dSᵀ,  dV = Aᵀ dO + diag(μ) K dS, with
// G = (dO Vᵀ) ⊙ D, A = (Q Kᵀ) ⊙ D and dS the gradient w.r.t. the state leaving the chunk.
template <class T, class P, class In>
void backward_chunks(const LinearAttentionShape& s, const In* q, const In* k, const In* v,
                     const T* gamma, const T* dout, T* dq, T* dk, T* dv, const T* state_in,
                     const T* dstate_out, T* dstate_in) {
  const HeadChunks L(s.B, s.T, s.H, s.dh, effective_chunk(s));
  if (L.matrices() == 0) {
    pass_through(s, dstate_out, dstate_in);
    return;
  }
  const std::vector<T> pw = decay_powers(gamma, s.H, L.C);
  const RowDecay<T> dec{L, pw};
  auto lambda = [&](int64_t h, int64_t c, int64_t i) { return dec.lambda(h, c, i); };
  auto mu = [&](int64_t h, int64_t c, int64_t i) { return dec.mu(h, c, i); };
  ChunkStates<T, P> st(L, dec, k, v, state_in, nullptr);
  Scratch<P> Q = packed_scratch<P>(L), dO = packed_scratch<P>(L);
  pack_head_chunks(L, q, Q.data());
  pack_head_chunks(L, dout, dO.data());
  const int64_t n = L.matrices(), C = L.C, dh = L.dh;
  Scratch<T> x1(L.elements()), x2(L.elements());
  {
    const Scratch<P> G = masked_scores(L, pw, dO.data(), st.V.data());
    batched_gemm(false, true, n, C, dh, dh, dO.data(), st.Sp.data(), T(0), x1.data());
    batched_gemm(false, false, n, C, dh, C, G.data(), st.K.data(), T(0), x2.data());
    unpack_head_chunks(L, x1.data(), lambda, x2.data(), dq);
    batched_gemm(true, false, n, C, dh, C, G.data(), Q.data(), T(0), x2.data());
  }
  // The state gradients, into the fp32 states' room (no longer needed) and Sp's.
  {
    Scratch<P> dOl = packed_scratch<P>(L);
    pack_head_chunks(L, dout, dOl.data(), lambda);
    batched_gemm(true, false, n, dh, dh, C, Q.data(), dOl.data(), T(0), st.S.data());
  }
  scan_chunks(L, dec, true, st.S.data(), st.Sp.data(), dstate_out, dstate_in);
  batched_gemm(false, true, n, C, dh, dh, st.V.data(), st.Sp.data(), T(0), x1.data());
  unpack_head_chunks(L, x1.data(), mu, x2.data(), dk);
  const Scratch<P> A = masked_scores(L, pw, Q.data(), st.K.data());
  batched_gemm(false, false, n, C, dh, dh, st.K.data(), st.Sp.data(), T(0), x1.data());
  batched_gemm(true, false, n, C, dh, C, A.data(), dO.data(), T(0), x2.data());
  unpack_head_chunks(L, x1.data(), mu, x2.data(), dv);
}

// fp32 runs in the operand precision the shape asks for; double is the exact reference path.
template <class T>
bool bf16_operands(const LinearAttentionShape& s) {
  if constexpr (std::is_same_v<T, float>) return s.precision == Precision::bf16;
  return false;
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
  if constexpr (std::is_same_v<T, float>)
    if (bf16_operands<T>(s))
      return forward_chunks<float, bf16>(s, q, k, v, gamma, o, state_in, state_out);
  forward_chunks<T, T>(s, q, k, v, gamma, o, state_in, state_out);
}

template <class T>
void linear_attention_backward(const LinearAttentionShape& s, const T* q, const T* k, const T* v,
                               const T* gamma, const T* dout, T* dq, T* dk, T* dv,
                               const std::type_identity_t<T>* state_in,
                               const std::type_identity_t<T>* dstate_out,
                               std::type_identity_t<T>* dstate_in) {
  check_shape(s);
  if constexpr (std::is_same_v<T, float>)
    if (bf16_operands<T>(s))
      return backward_chunks<float, bf16>(s, q, k, v, gamma, dout, dq, dk, dv, state_in, dstate_out,
                                          dstate_in);
  backward_chunks<T, T>(s, q, k, v, gamma, dout, dq, dk, dv, state_in, dstate_out, dstate_in);
}

void linear_attention_forward(const LinearAttentionShape& s, const bf16* q, const bf16* k,
                              const bf16* v, const float* gamma, float* o, const float* state_in,
                              float* state_out) {
  check_shape(s);
  STRATA_CHECK(s.precision == Precision::bf16, "bf16 linear attention operands need bf16");
  forward_chunks<float, bf16>(s, q, k, v, gamma, o, state_in, state_out);
}

void linear_attention_backward(const LinearAttentionShape& s, const bf16* q, const bf16* k,
                               const bf16* v, const float* gamma, const float* dout, float* dq,
                               float* dk, float* dv, const float* state_in, const float* dstate_out,
                               float* dstate_in) {
  check_shape(s);
  STRATA_CHECK(s.precision == Precision::bf16, "bf16 linear attention operands need bf16");
  backward_chunks<float, bf16>(s, q, k, v, gamma, dout, dq, dk, dv, state_in, dstate_out,
                               dstate_in);
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
