#pragma once
// SiLU and its derivative, shared by the SwiGLU MLP and the linear-attention feature map.
#include <cmath>

namespace strata {

template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <class T>
inline T silu(T x) {
  return x * sigmoid(x);
}
// d silu(x) / dx = s(x) (1 + x (1 - s(x)))
template <class T>
inline T silu_grad(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

}  // namespace strata
