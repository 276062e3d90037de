#pragma once
// Shared by the kernel tests (attention, RoPE, the bf16 ops): seeded normal data in any scalar
// type, a relative error that does not blow up on entries near zero, and a norm-wise one.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace strata::test {

template <class T>
std::vector<T> randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<T> x(n);
  for (auto& e : x) e = static_cast<T>(d(gen));
  return x;
}

// max |a - b| / max |b|
template <class A, class B>
double rel_err(const A& a, const B& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / std::max(den, 1e-300);
}

// ||a - b|| / ||b|| (Euclidean; ||b|| = 0 gives ||a - b||): the norm-wise error that the bf16
// tolerances are stated in.
template <class A, class B>
double rel_norm(const A& a, const B& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

}  // namespace strata::test
