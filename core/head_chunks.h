#pragma once
// The layout the batched attention kernels multiply in: activations of [B, T, H, dh] (token-major,
// a projection's output) repacked head-major and cut into chunks of C rows,
//   [B*H, nc, C, dh],   nc = ceil(T / C),
// so every (sequence, head, chunk) is one dense [C, dh] matrix, the batch entries one after
// another (core/batched_gemm.h). The last chunk's rows past T are zero: they add nothing to any
// product, and the kernels drop what lands on them. Packing converts to the operand type (fp32,
// or bf16 under mixed precision) and may scale each row; unpacking combines two fp32 results.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/bf16.h"
#include "core/memory.h"
#include "core/threads.h"
#include "core/vexp.h"

namespace strata {

struct HeadChunks {
  int64_t B, T, H, dh, C, nc;
  HeadChunks(int64_t B_, int64_t T_, int64_t H_, int64_t dh_, int64_t C_)
      : B(B_), T(T_), H(H_), dh(dh_), C(C_), nc(T_ > 0 ? (T_ + C_ - 1) / C_ : 0) {}
  int64_t matrices() const { return B * H * nc; }  // batch entries
  int64_t elements() const { return matrices() * C * dh; }
  int64_t rows_of(int64_t c) const { return c + 1 < nc ? C : T - c * C; }  // chunk c's real rows
  bool threads() const { return worth_threads(B * T * H * dh * 8); }
  bool padded() const { return nc * C != T; }
};

// n values of X in a FloatBuffer charged to activations (any element type): zeroed, or not for
// what its producer writes in full (FloatBuffer::uninitialised).
template <class X>
class Scratch {
 public:
  explicit Scratch(int64_t n, bool zeroed = false)
      : buf_(zeroed ? FloatBuffer(floats(n), MemCategory::activations)
                    : FloatBuffer::uninitialised(floats(n), MemCategory::activations)) {}
  X* data() { return reinterpret_cast<X*>(buf_.data()); }
  const X* data() const { return reinterpret_cast<const X*>(buf_.data()); }

 private:
  static int64_t floats(int64_t n) { return (n * static_cast<int64_t>(sizeof(X)) + 3) / 4; }
  FloatBuffer buf_;
};

// A packed [B*H, nc, C, dh] operand: its padding rows must read as zero.
template <class P>
Scratch<P> packed_scratch(const HeadChunks& L) {
  return Scratch<P>(L.elements(), L.padded());
}

template <class P, class T>
inline P operand_cast(T x) {
  if constexpr (std::is_same_v<P, bf16>)
    return fp32_to_bf16(x);
  else
    return static_cast<P>(x);
}

// The scalar an element of storage type S computes in: bf16 values are expanded to fp32.
template <class S>
using compute_t = std::conditional_t<std::is_same_v<S, bf16>, float, S>;

// y[d] = a * x[d] (* w[d] when w is given) for d < n, converted to P: 16 lanes at a time for
// float (core/vexp.h; the scalar bf16 conversion's NaN branch keeps a plain loop scalar). x may
// be stored in bf16 when T is float (its values expanded exactly).
template <class S, class T, class P>
inline void store_scaled(const S* x, const T* w, T a, P* y, int64_t n) {
  static_assert(std::is_same_v<compute_t<S>, T>, "x is stored as T, or as bf16 for float");
  if constexpr (std::is_same_v<T, float>) {
    for_lanes(0, n, [&](auto lane, int64_t d) {
      using V = decltype(lane);
      V v = V(a) * vload(x + d, lane);
      if (w) v = v * vload(w + d, lane);
      vstore(y + d, v);
    });
  } else {
    for (int64_t d = 0; d < n; ++d) y[d] = operand_cast<P>(a * x[d] * (w ? w[d] : T(1)));
  }
}

// y[bh, c, i, :] = scale(h, c, i) * x[b, c*C + i, h, :] for the real rows (padding untouched).
// x of T, or of bf16 under float scales (the bf16 precision's operands, packed as they are).
template <class S, class P, class F>
void pack_head_chunks(const HeadChunks& L, const S* x, P* y, F scale) {
  using T = compute_t<S>;
#pragma omp parallel for collapse(2) schedule(static) if (L.threads())
  for (int64_t b = 0; b < L.B; ++b)
    for (int64_t t = 0; t < L.T; ++t) {
      const int64_t c = t / L.C, i = t % L.C;
      for (int64_t h = 0; h < L.H; ++h) {
        const S* src = x + ((b * L.T + t) * L.H + h) * L.dh;
        P* dst = y + (((b * L.H + h) * L.nc + c) * L.C + i) * L.dh;
        store_scaled(src, static_cast<const T*>(nullptr), scale(h, c, i), dst, L.dh);
      }
    }
}

template <class S, class P>
void pack_head_chunks(const HeadChunks& L, const S* x, P* y) {
  pack_head_chunks(L, x, y, [](int64_t, int64_t, int64_t) { return compute_t<S>(1); });
}

// out[b, c*C + i, h, :] = scale(h, c, i) * x1[bh, c, i, :] + x2[bh, c, i, :] for the real rows.
template <class T, class F>
void unpack_head_chunks(const HeadChunks& L, const T* x1, F scale, const T* x2, T* out) {
#pragma omp parallel for collapse(2) schedule(static) if (L.threads())
  for (int64_t b = 0; b < L.B; ++b)
    for (int64_t t = 0; t < L.T; ++t) {
      const int64_t c = t / L.C, i = t % L.C;
      for (int64_t h = 0; h < L.H; ++h) {
        const T a = scale(h, c, i);
        const int64_t src = (((b * L.H + h) * L.nc + c) * L.C + i) * L.dh;
        T* dst = out + ((b * L.T + t) * L.H + h) * L.dh;
        for (int64_t d = 0; d < L.dh; ++d) dst[d] = a * x1[src + d] + x2[src + d];
      }
    }
}

// Every [C, C] score matrix S of the batch: P[i, j] = S[i, j] * γ_h^(i-j) for j <= i, else 0
// (the causal decay mask), converted to the operand type. Row i reads the powers backwards from
// γ^i, so they are kept reversed per head (rev[k] = γ^(C-1-k)) and read forwards.
template <class T, class P>
void decay_mask(const HeadChunks& L, const std::vector<T>& pw, const T* S, P* out) {
  const int64_t C = L.C;
  std::vector<T> rev(static_cast<size_t>(L.H * C));  // [H, C]
  for (int64_t h = 0; h < L.H; ++h)
    for (int64_t k = 0; k < C; ++k) rev[h * C + k] = pw[h * (C + 1) + C - 1 - k];
#pragma omp parallel for schedule(static) if (L.threads())
  for (int64_t m = 0; m < L.matrices(); ++m) {
    const T* r = rev.data() + ((m / L.nc) % L.H) * C;
    const T* s = S + m * C * C;
    P* o = out + m * C * C;
    for (int64_t i = 0; i < C; ++i) {
      store_scaled(s + i * C, r + C - 1 - i, T(1), o + i * C, i + 1);  // γ^(i-j), j = 0..i
      std::fill(o + i * C + i + 1, o + (i + 1) * C, P(0));
    }
  }
}

}  // namespace strata
