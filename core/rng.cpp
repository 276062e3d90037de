#include "core/rng.h"

#include <cmath>

namespace strata {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
    k[0] += W0;
    k[1] += W1;
  }
  return c;
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

std::array<uint32_t, 2> rng_key(uint64_t seed, std::string_view name) {
  const uint64_t h = fnv1a64(name) ^ (seed * 0x9E3779B97F4A7C15ull);
  return {static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)};
}

static double to_unit(uint32_t hi, uint32_t lo) {
  // 53 random bits -> [0,1)
  const uint64_t v = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(v & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

double uniform_at(std::array<uint32_t, 2> key, uint64_t i) {
  const auto r = philox4x32({static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 0, 0}, key);
  return to_unit(r[0], r[1]);
}

float normal_at(std::array<uint32_t, 2> key, uint64_t i, float mean, float std) {
  const auto r = philox4x32({static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 1, 0}, key);
  const double u1 = 1.0 - to_unit(r[0], r[1]);  // (0,1]
  const double u2 = to_unit(r[2], r[3]);
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  return static_cast<float>(mean + std * z);
}

void fill_normal(float* dst, int64_t n, uint64_t seed, std::string_view name, float std,
                 uint64_t offset) {
  const auto key = rng_key(seed, name);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i)
    dst[i] = normal_at(key, offset + static_cast<uint64_t>(i), 0.f, std);
}

uint64_t RngStream::next_below(uint64_t n) {
  return static_cast<uint64_t>(next_uniform() * static_cast<double>(n)) % n;
}

}  // namespace strata
