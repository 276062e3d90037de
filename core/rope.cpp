#include "core/rope.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/profile.h"

namespace strata {
namespace {

// Rotates every head of every token by +angle (sign = 1, forward) or −angle (sign = -1, the
// transpose, used by the backward). A rotation's transpose is the rotation by the negated angle.
template <class T>
void rope_apply(T* x, int64_t B, int64_t Tn, int64_t Hx, int64_t dh, int64_t pos0, float theta,
                int sign) {
  STRATA_CHECK(dh % 2 == 0, "RoPE needs an even head dim");
  const int64_t half = dh / 2;
  // Threads only above a minimum of work: a fork/join costs microseconds (far more on an
  // oversubscribed machine), more than rotating a few thousand numbers.
  const bool par = B * Tn * Hx * dh >= (int64_t{1} << 16);
  // cos/sin table [T, half]: angles in double (see header), shared by all batches and heads.
  std::vector<T> cs(Tn * half), sn(Tn * half);
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const double f = std::pow(static_cast<double>(theta), -2.0 * double(j) / double(dh));
      const double a = static_cast<double>(pos0 + t) * f;
      cs[t * half + j] = static_cast<T>(std::cos(a));
      sn[t * half + j] = static_cast<T>(sign * std::sin(a));
    }
#pragma omp parallel for collapse(2) schedule(static) if (par)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t) {
      const T* c = cs.data() + t * half;
      const T* s = sn.data() + t * half;
      for (int64_t h = 0; h < Hx; ++h) {
        T* r = x + ((b * Tn + t) * Hx + h) * dh;  // [dh]
        for (int64_t j = 0; j < half; ++j) {
          const T x0 = r[j], x1 = r[j + half];
          r[j] = x0 * c[j] - x1 * s[j];
          r[j + half] = x1 * c[j] + x0 * s[j];
        }
      }
    }
}

}  // namespace

template <class T>
void rope_forward(T* x, int64_t B, int64_t Tn, int64_t Hx, int64_t dh, int64_t pos0, float theta) {
  ProfScope prof_scope(ProfOp::elementwise);
  rope_apply(x, B, Tn, Hx, dh, pos0, theta, +1);
}

template <class T>
void rope_backward(T* dx, int64_t B, int64_t Tn, int64_t Hx, int64_t dh, int64_t pos0,
                   float theta) {
  ProfScope prof_scope(ProfOp::elementwise);
  rope_apply(dx, B, Tn, Hx, dh, pos0, theta, -1);
}

template void rope_forward<float>(float*, int64_t, int64_t, int64_t, int64_t, int64_t, float);
template void rope_forward<double>(double*, int64_t, int64_t, int64_t, int64_t, int64_t, float);
template void rope_backward<float>(float*, int64_t, int64_t, int64_t, int64_t, int64_t, float);
template void rope_backward<double>(double*, int64_t, int64_t, int64_t, int64_t, int64_t, float);

}  // namespace strata
