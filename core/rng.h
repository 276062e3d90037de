#pragma once
// Counter-based random numbers (Philox4x32-10). A value depends only on (key, counter), so any
// shard of a tensor can draw its own slice and every layout holds the same numbers.
#include <array>
#include <cstdint>
#include <string_view>

namespace strata {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// 64-bit FNV-1a: stable across platforms and runs (std::hash is not).
uint64_t fnv1a64(std::string_view s);

// Key for a named tensor: (seed, name) -> philox key.
std::array<uint32_t, 2> rng_key(uint64_t seed, std::string_view name);

// Element i of a N(mean, std) tensor keyed by `key` (Box-Muller on counter i).
float normal_at(std::array<uint32_t, 2> key, uint64_t i, float mean, float std);
// Uniform in [0,1) for element i.
double uniform_at(std::array<uint32_t, 2> key, uint64_t i);

// Fills dst[0..n) with elements [offset, offset+n) of the tensor keyed by (seed, name).
void fill_normal(float* dst, int64_t n, uint64_t seed, std::string_view name, float std,
                 uint64_t offset = 0);

// A stream of random numbers whose whole state is (key, position): trivially checkpointed.
struct RngStream {
  std::array<uint32_t, 2> key{};
  uint64_t position = 0;
  double next_uniform() { return uniform_at(key, position++); }
  uint64_t next_below(uint64_t n);  // uniform integer in [0, n)
};

}  // namespace strata
