#pragma once
// Shared helpers of the model tests: small configs and a directional finite-difference check.
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "models/block.h"
#include "models/config.h"
#include "models/param_unit.h"

namespace strata::test {

// A block's unit as the block tests prepare it: declared, allocated, initialised from seed 7,
// the norm gains moved away from 1 (so their gradients are generic) and, with `scale` > 1, the
// matrices scaled up from init (so every path contributes visibly to the loss).
inline void prepare_block_unit(const Block& block, ParamUnit& unit, float scale = 1.f) {
  block.declare(unit);
  unit.allocate();
  unit.init(7);
  for (const auto& t : unit.tensors())
    if (t.init_std == 0.f)
      for (int64_t i = 0; i < t.numel; ++i)
        unit.params()[t.offset + i] += 0.1f * std::sin(float(i));
  if (scale != 1.f)
    for (int64_t i = 0; i < unit.numel(); ++i)
      unit.params()[i] *= unit.params()[i] == 0 ? 1.f : scale;
}

inline ModelConfig tiny_model(const std::string& pattern, Decay decay, int64_t chunk) {
  ModelConfig c;
  c.vocab_size = 23;
  c.dim = 16;
  c.n_layers = static_cast<int64_t>(pattern.size());
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_dim = 24;
  c.layer_pattern = pattern;
  c.decay = decay;
  c.chunk_size = chunk;
  return c;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Directional derivative check in fp32: compares the analytic <grad, d> with the central
// difference of f along a unit direction d = normalise(grad/|grad| + r/|r|), r random. The
// gradient component gives the difference quotient a signal well above fp32 rounding; the random
// component makes an error in any direction visible (it is orthogonal to d only by accident).
struct DirectionalCheck {
  double analytic = 0, numeric = 0;
  double rel_error() const {
    return std::abs(analytic - numeric) / std::max(1e-6, std::abs(analytic) + std::abs(numeric));
  }
};

inline DirectionalCheck directional_check(float* x, const float* grad, int64_t n, uint32_t seed,
                                          const std::function<double()>& f, float step = 3e-4f) {
  auto d = random_vector(static_cast<size_t>(n), seed);
  double rn = 0, gn = 0;
  for (int64_t i = 0; i < n; ++i) {
    rn += double(d[i]) * d[i];
    gn += double(grad[i]) * grad[i];
  }
  rn = std::sqrt(rn);
  gn = std::sqrt(gn);
  double dn = 0;
  for (int64_t i = 0; i < n; ++i) {
    d[i] = static_cast<float>(d[i] / rn + (gn > 0 ? grad[i] / gn : 0.0));
    dn += double(d[i]) * d[i];
  }
  dn = std::sqrt(dn);
  for (auto& v : d) v = static_cast<float>(v / dn);
  DirectionalCheck c;
  for (int64_t i = 0; i < n; ++i) c.analytic += double(grad[i]) * d[i];
  std::vector<float> keep(x, x + n);
  for (int64_t i = 0; i < n; ++i) x[i] = keep[i] + step * d[i];
  const double fp = f();
  for (int64_t i = 0; i < n; ++i) x[i] = keep[i] - step * d[i];
  const double fm = f();
  for (int64_t i = 0; i < n; ++i) x[i] = keep[i];
  c.numeric = (fp - fm) / (2.0 * step);
  return c;
}

}  // namespace strata::test
