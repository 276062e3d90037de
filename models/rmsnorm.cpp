#include "models/rmsnorm.h"

#include <cmath>

#include "core/lane_sum.h"
#include "core/profile.h"

namespace strata {

namespace {

// One place for y = x * inv (* g), so rmsnorm_apply repeats the forward's bits.
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
    T* yr = y + n * D;
    // The mean of squares in double: D can be large and this sets the scale.
    const double ss = lane_sum(D, [&](int64_t j) { return double(xr[j]) * double(xr[j]); });
    const T inv = T(1.0 / std::sqrt(ss / double(D) + double(eps)));
    inv_rms[n] = inv;
    normalise_row(xr, g, inv, yr, D);
  }
}

template <class T>
void rmsnorm_apply(const T* x, const T* g, const T* inv_rms, T* y, int64_t N, int64_t D) {
  ProfScope prof_scope(ProfOp::norm);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) normalise_row(x + n * D, g, inv_rms[n], y + n * D, D);
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

template void rmsnorm_forward<float>(const float*, const float*, float*, float*, int64_t, int64_t,
                                     float);
template void rmsnorm_forward<double>(const double*, const double*, double*, double*, int64_t,
                                      int64_t, float);
template void rmsnorm_apply<float>(const float*, const float*, const float*, float*, int64_t,
                                   int64_t);
template void rmsnorm_apply<double>(const double*, const double*, const double*, double*, int64_t,
                                    int64_t);
template void rmsnorm_backward<float>(const float*, const float*, const float*, const float*,
                                      float*, float*, int64_t, int64_t);
template void rmsnorm_backward<double>(const double*, const double*, const double*, const double*,
                                       double*, double*, int64_t, int64_t);

}  // namespace strata
