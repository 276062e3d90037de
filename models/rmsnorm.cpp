#include "models/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/lane_sum.h"
#include "core/profile.h"
#include "core/vexp.h"

namespace strata {

namespace {

// 1 / sqrt(mean_j x_j^2 + eps) of a row, the mean of squares in double: D can be large and this
// sets the scale. One place for both forms of the forward.
template <class T>
T row_inv_rms(const T* xr, int64_t D, float eps) {
  const double ss = lane_sum(D, [&](int64_t j) { return double(xr[j]) * double(xr[j]); });
  return T(1.0 / std::sqrt(ss / double(D) + double(eps)));
}

// y = x * inv (* g) of a row.
template <class T>
void normalise_row(const T* xr, const T* g, T inv, T* yr, int64_t D) {
  if (g) {
    for (int64_t j = 0; j < D; ++j) yr[j] = xr[j] * inv * g[j];
  } else {
    for (int64_t j = 0; j < D; ++j) yr[j] = xr[j] * inv;
  }
}

}  // namespace

template <class T>
void rmsnorm_forward(const T* x, const T* g, T* y, T* inv_rms, int64_t N, int64_t D, float eps) {
  ProfScope prof_scope(ProfOp::norm);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * D;
    const T inv = row_inv_rms(xr, D, eps);
    inv_rms[n] = inv;
    normalise_row(xr, g, inv, y + n * D, D);
  }
}

template <class T>
void rmsnorm_backward(const T* x, const T* g, const T* inv_rms, const T* dy, T* dx, T* dg,
                      int64_t N, int64_t D) {
  ProfScope prof_scope(ProfOp::norm);
  // dx_j = inv * gy_j - x_j * inv^3 * mean_k(gy_k x_k),  gy = dy * g
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * D;
    const T* dyr = dy + n * D;
    T* dxr = dx + n * D;
    const T inv = inv_rms[n];
    const double dot =
        lane_sum(D, [&](int64_t j) { return double(g ? dyr[j] * g[j] : dyr[j]) * double(xr[j]); });
    const T c = T(dot / double(D)) * inv * inv * inv;
    for (int64_t j = 0; j < D; ++j) dxr[j] = inv * (g ? dyr[j] * g[j] : dyr[j]) - xr[j] * c;
  }
  if (!g) return;
  // dg_j += sum_n dy[n,j] x[n,j] inv[n]: columns in parallel, rows in a fixed order, so the
  // result does not depend on the thread count.
  constexpr int64_t kCols = 16;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < D; j0 += kCols) {
    const int64_t j1 = j0 + kCols < D ? j0 + kCols : D;
    T acc[kCols] = {};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += dy[n * D + j] * x[n * D + j] * inv_rms[n];
    for (int64_t j = j0; j < j1; ++j) dg[j] += acc[j - j0];
  }
}

// ---- the normalised-rows form ----------------------------------------------------------------

namespace {

// Rows of float go through core/vexp.h's 16-float lanes (loads of bf16 exact, stores rounded to
// nearest even, the same bits on both lanes); double, the finite-difference reference, one by
// one through these.
inline double vload(const double* p, double) { return *p; }
inline void vstore(double* p, double v) { *p = v; }
inline double vfma(double a, double b, double c) { return std::fma(a, b, c); }
inline double vadd_unfused(double a, double b) {  // as core/vexp.h's float one, in double
  volatile double rounded = a;
  return rounded + b;
}

template <class T, class Fn>
void row_lanes(int64_t D, Fn&& fn) {
  if constexpr (std::is_same_v<T, float>) {
    for_lanes(0, D, fn);
  } else {
    for (int64_t j = 0; j < D; ++j) fn(T{}, j);
  }
}

inline double widen(double v) { return v; }
inline double widen(float v) { return v; }
inline double widen(bf16 v) { return stored_value(v); }

}  // namespace

template <class T, class S>
void rmsnorm_normalise(const T* x, S* xhat, T* inv_rms, int64_t N, int64_t D, float eps) {
  ProfScope prof_scope(ProfOp::norm);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * D;
    S* yr = xhat + n * D;
    const T inv = row_inv_rms(xr, D, eps);
    inv_rms[n] = inv;
    row_lanes<T>(D, [&](auto lane, int64_t j) {
      using V = decltype(lane);
      vstore(yr + j, vload(xr + j, lane) * V(inv));
    });
  }
}

template <class T, class S>
void rmsnorm_normalise_gain(const T* x, const T* g, S* xhat, S* y, T* inv_rms, int64_t N, int64_t D,
                            float eps) {
  ProfScope prof_scope(ProfOp::norm);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* xr = x + n * D;
    S *hr = xhat + n * D, *yr = y + n * D;
    const T inv = row_inv_rms(xr, D, eps);
    inv_rms[n] = inv;
    row_lanes<T>(D, [&](auto lane, int64_t j) {
      using V = decltype(lane);
      vstore(hr + j, vload(xr + j, lane) * V(inv));
      vstore(yr + j, vload(hr + j, lane) * vload(g + j, lane));  // xhat as stored, as the gain
    });
  }
}

template <class T, class S>
void rmsnorm_gain(const S* xhat, const T* g, S* y, int64_t N, int64_t D) {
  ProfScope prof_scope(ProfOp::norm);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    row_lanes<T>(D, [&](auto lane, int64_t j) {
      vstore(y + n * D + j, vload(xhat + n * D + j, lane) * vload(g + j, lane));
    });
}

// sum_j (dy_j g_j) xhat_j of one row (g = nullptr: dy_j). float: 16 float running sums (fma,
// sum k taking the terms j = k mod 16 of the first D - D mod 16), added in double, then the
// last D mod 16 terms in double: the same bits with or without a vector lane, and several times
// faster than a double sum of every term. double (the finite-difference reference): lane_sum.
template <class T, class S>
double row_dot(const T* dy, const T* g, const S* x, int64_t D) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t body = D / 16 * 16;
    float sums[16] = {};
#ifdef STRATA_VEC16
    Vec16 acc(0.f);
    for (int64_t j = 0; j < body; j += 16) {
      const Vec16 d = g ? vload(dy + j, Vec16{}) * vload(g + j, Vec16{}) : vload(dy + j, Vec16{});
      acc = vfma(d, vload(x + j, Vec16{}), acc);
    }
    vstore(sums, acc);
#else
    for (int64_t j = 0; j < body; ++j)
      sums[j % 16] = std::fma(g ? dy[j] * g[j] : dy[j], stored_value(x[j]), sums[j % 16]);
#endif
    double total = 0;
    for (float v : sums) total += v;
    for (int64_t j = body; j < D; ++j) total += double(g ? dy[j] * g[j] : dy[j]) * widen(x[j]);
    return total;
  } else {
    return lane_sum(D, [&](int64_t j) { return double(g ? dy[j] * g[j] : dy[j]) * widen(x[j]); });
  }
}

template <class T, class S>
void rmsnorm_backward_normalised(const S* xhat, const T* g, const T* inv_rms, const T* dy, T* dx,
                                 T* dg, int64_t N, int64_t D, const T* residual) {
  ProfScope prof_scope(ProfOp::norm);
  // One pass over the rows: dx, and dg's partial sums over fixed blocks of rows (then added in
  // block order), so the bits do not depend on the thread count.
  constexpr int64_t kRows = 32;
  const int64_t blocks = (N + kRows - 1) / kRows;
  std::vector<T> partial(g ? static_cast<size_t>(blocks * D) : 0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    T* pb = g ? partial.data() + b * D : nullptr;
    for (int64_t n = b * kRows; n < std::min(N, (b + 1) * kRows); ++n) {
      const S* xr = xhat + n * D;
      const T* dyr = dy + n * D;
      T* dxr = dx + n * D;
      const T* rr = residual ? residual + n * D : nullptr;
      const T inv = inv_rms[n];
      const T c = T(row_dot(dyr, g, xr, D) / double(D));
      row_lanes<T>(D, [&](auto lane, int64_t j) {
        using V = decltype(lane);
        const V d = vload(dyr + j, lane), xh = vload(xr + j, lane);
        const V gy = g ? d * vload(g + j, lane) : d;
        const V dxj = V(inv) * vfma(xh, V(-c), gy);  // inv (gy - xhat c)
        vstore(dxr + j, rr ? vadd_unfused(dxj, vload(rr + j, lane)) : dxj);
        if (pb) vstore(pb + j, vfma(d, xh, vload(pb + j, lane)));
      });
    }
  }
  if (!g) return;
  constexpr int64_t kCols = 16;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < D; j0 += kCols) {
    const int64_t j1 = std::min(D, j0 + kCols);
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t j = j0; j < j1; ++j) dg[j] += partial[static_cast<size_t>(b * D + j)];
  }
}

#define STRATA_NORMALISED(T, S)                                                                   \
  template void rmsnorm_normalise<T, S>(const T*, S*, T*, int64_t, int64_t, float);               \
  template void rmsnorm_gain<T, S>(const S*, const T*, S*, int64_t, int64_t);                     \
  template void rmsnorm_normalise_gain<T, S>(const T*, const T*, S*, S*, T*, int64_t, int64_t,    \
                                             float);                                              \
  template void rmsnorm_backward_normalised<T, S>(const S*, const T*, const T*, const T*, T*, T*, \
                                                  int64_t, int64_t, const T*);
STRATA_NORMALISED(float, float)
STRATA_NORMALISED(float, bf16)
STRATA_NORMALISED(double, double)
#undef STRATA_NORMALISED

template void rmsnorm_forward<float>(const float*, const float*, float*, float*, int64_t, int64_t,
                                     float);
template void rmsnorm_forward<double>(const double*, const double*, double*, double*, int64_t,
                                      int64_t, float);
template void rmsnorm_backward<float>(const float*, const float*, const float*, const float*,
                                      float*, float*, int64_t, int64_t);
template void rmsnorm_backward<double>(const double*, const double*, const double*, const double*,
                                       double*, double*, int64_t, int64_t);

}  // namespace strata
