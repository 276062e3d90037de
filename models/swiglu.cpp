#include "models/swiglu.h"

#include <type_traits>

#include "core/profile.h"
#include "core/vexp.h"
#include "models/activation.h"

namespace strata {

// float goes through core/vexp.h's exp (vectorised, same bits on every code path); double, the
// finite-difference reference, keeps std::exp.
namespace {
template <class V>
V silu_grad_v(V x, V s) {
  return s * vfma(x, V(1.f) - s, V(1.f));  // s (1 + x (1 - s))
}

// The float kernels, written once over the storage types (float, or bf16 in the bf16 precision:
// loaded exactly, computed in fp32, stored rounded). In-place use is allowed: every lane loads
// all it reads before it stores.
template <class In, class Out>
void swiglu_forward_lanes(const In* gate, const In* up, Out* act, int64_t n) {
  parallel_for_lanes(n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    const V g = vload(gate + i, lane);
    vstore(act + i, g * sigmoid_v(g) * vload(up + i, lane));
  });
}

template <class In, class Out>
void swiglu_backward_lanes(const In* gate, const In* up, const float* dact, Out* dgate, Out* dup,
                           int64_t n) {
  parallel_for_lanes(n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    const V g = vload(gate + i, lane), u = vload(up + i, lane), d = vload(dact + i, lane);
    const V s = sigmoid_v(g);
    vstore(dup + i, d * (g * s));
    vstore(dgate + i, d * u * silu_grad_v(g, s));
  });
}

template <class In, class Out>
void feature_map_forward_lanes(const In* x, Out* y, int64_t n, float scale) {
  parallel_for_lanes(n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    const V v = vload(x + i, lane);
    vstore(y + i, V(scale) * (v * sigmoid_v(v)));
  });
}

template <class In, class Out>
void feature_map_backward_lanes(const In* x, const float* dy, Out* dx, int64_t n, float scale) {
  parallel_for_lanes(n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    const V v = vload(x + i, lane);
    vstore(dx + i, V(scale) * vload(dy + i, lane) * silu_grad_v(v, sigmoid_v(v)));
  });
}
}  // namespace

template <class T>
void swiglu_forward(const T* gate, const T* up, T* act, int64_t n) {
  ProfScope prof_scope(ProfOp::elementwise);
  if constexpr (std::is_same_v<T, float>) return swiglu_forward_lanes(gate, up, act, n);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) act[i] = silu(gate[i]) * up[i];
}

template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dact, T* dgate, T* dup, int64_t n) {
  ProfScope prof_scope(ProfOp::elementwise);
  if constexpr (std::is_same_v<T, float>)
    return swiglu_backward_lanes(gate, up, dact, dgate, dup, n);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    // Read everything first: dgate/dup may alias gate/up/dact (the backward works in place).
    const T g = gate[i], u = up[i], d = dact[i];
    dup[i] = d * silu(g);
    dgate[i] = d * u * silu_grad(g);
  }
}

template <class T>
void feature_map_forward(const T* x, T* y, int64_t n, bool use_silu, T scale) {
  ProfScope prof_scope(ProfOp::elementwise);
  if constexpr (std::is_same_v<T, float>)
    if (use_silu) return feature_map_forward_lanes(x, y, n, scale);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = scale * (use_silu ? silu(x[i]) : x[i]);
}

template <class T>
void feature_map_backward(const T* x, const T* dy, T* dx, int64_t n, bool use_silu, T scale) {
  ProfScope prof_scope(ProfOp::elementwise);
  if constexpr (std::is_same_v<T, float>)
    if (use_silu) return feature_map_backward_lanes(x, dy, dx, n, scale);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = scale * dy[i] * (use_silu ? silu_grad(x[i]) : T(1));
}

void swiglu_forward(const bf16* gate, const bf16* up, bf16* act, int64_t n) {
  ProfScope prof_scope(ProfOp::elementwise);
  swiglu_forward_lanes(gate, up, act, n);
}

void swiglu_backward(const bf16* gate, const bf16* up, const float* dact, bf16* dgate, bf16* dup,
                     int64_t n) {
  ProfScope prof_scope(ProfOp::elementwise);
  swiglu_backward_lanes(gate, up, dact, dgate, dup, n);
}

void feature_map_forward(const bf16* x, bf16* y, int64_t n, bool use_silu, float scale) {
  ProfScope prof_scope(ProfOp::elementwise);
  if (use_silu) return feature_map_forward_lanes(x, y, n, scale);
  parallel_for_lanes(n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    vstore(y + i, V(scale) * vload(x + i, lane));
  });
}

void feature_map_backward(const bf16* x, const float* dy, bf16* dx, int64_t n, bool use_silu,
                          float scale) {
  ProfScope prof_scope(ProfOp::elementwise);
  if (use_silu) return feature_map_backward_lanes(x, dy, dx, n, scale);
  parallel_for_lanes(n, [&](auto lane, int64_t i) {
    using V = decltype(lane);
    vstore(dx + i, V(scale) * vload(dy + i, lane));
  });
}

template void swiglu_forward<float>(const float*, const float*, float*, int64_t);
template void swiglu_forward<double>(const double*, const double*, double*, int64_t);
template void swiglu_backward<float>(const float*, const float*, const float*, float*, float*,
                                     int64_t);
template void swiglu_backward<double>(const double*, const double*, const double*, double*, double*,
                                      int64_t);
template void feature_map_forward<float>(const float*, float*, int64_t, bool, float);
template void feature_map_forward<double>(const double*, double*, int64_t, bool, double);
template void feature_map_backward<float>(const float*, const float*, float*, int64_t, bool, float);
template void feature_map_backward<double>(const double*, const double*, double*, int64_t, bool,
                                           double);

}  // namespace strata
