#include "offload/tier_probe.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/memory.h"

namespace strata {
namespace {

// A clock tick as the floor: a zero interval would make an infinite bandwidth.
double elapsed_s(Clock::time_point t0) { return std::max(seconds_since(t0), 1e-9); }

// Every piece carries its index in its first and last float, so a piece read back in place of
// another fails the comparison; the rest is one arbitrary bit pattern (NaNs included: memcmp).
void stamp(FloatBuffer& buf, int64_t piece) {
  const uint32_t a = static_cast<uint32_t>(piece), b = ~a;
  std::memcpy(buf.data(), &a, 4);
  std::memcpy(buf.data() + buf.size() - 1, &b, 4);
}

// Handles not yet read; discarded if the probe throws, so the tier is left empty either way.
struct Pending {
  SwapTier& tier;
  std::vector<SwapTier::Handle> handles;
  ~Pending() {
    for (SwapTier::Handle h : handles) try {
        if (h >= 0) tier.discard(h);
      } catch (...) {  // already unwinding from the probe's own error: that one is reported
      }
  }
};

}  // namespace

TierBandwidth probe_tier_bandwidth(SwapTier& tier, int64_t bytes, int64_t piece_bytes) {
  STRATA_CHECK(bytes >= 8 && piece_bytes >= 4, "tier probe needs at least two floats");
  const int64_t piece_floats = std::min(piece_bytes, bytes / 2) / 4;
  const int64_t piece = piece_floats * 4, n = bytes / piece;
  const std::string where = std::string("swap tier ") + tier.name() +
                            (tier.path().empty() ? "" : " (" + tier.path() + ")");
  if (tier.bytes_used() + n * piece > tier.capacity())
    throw StrataError("tier probe: " + where + " has no room for " + format_bytes(n * piece) +
                      " (capacity " + format_bytes(tier.capacity()) + ", " +
                      format_bytes(tier.bytes_used()) + " in use)");

  FloatBuffer src(piece_floats, MemCategory::io), dst(piece_floats, MemCategory::io);
  uint32_t x = 0x9e3779b9u;
  for (int64_t i = 0; i < piece_floats; ++i) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;  // xorshift32
    std::memcpy(src.data() + i, &x, 4);
  }
  auto read_and_check = [&](SwapTier::Handle& h, int64_t k) {
    tier.read(h, dst.data());
    h = -1;  // read() released it
    stamp(src, k);
    if (std::memcmp(src.data(), dst.data(), static_cast<size_t>(piece)) != 0)
      throw StrataError("tier probe: " + where + " returned different data for piece " +
                        std::to_string(k) + " of " + std::to_string(n) + " (" +
                        format_bytes(piece) + " each) than was written");
  };

  Pending pending{tier, std::vector<SwapTier::Handle>(static_cast<size_t>(n), -1)};
  auto& h = pending.handles;
  const auto t_write = Clock::now();
  for (int64_t k = 0; k < n; ++k) {
    stamp(src, k);
    h[static_cast<size_t>(k)] = tier.write(src.data(), piece);
  }
  read_and_check(h.back(), n - 1);  // the fence: waits for the last write to land
  const double write_s = elapsed_s(t_write);
  tier.poll();  // retire the finished writes, so the reads below go to the device

  const auto t_read = Clock::now();
  for (int64_t k = 0; k + 1 < n; ++k) tier.prefetch(h[static_cast<size_t>(k)]);
  for (int64_t k = 0; k + 1 < n; ++k) read_and_check(h[static_cast<size_t>(k)], k);
  const double read_s = elapsed_s(t_read);
  tier.poll();

  return {static_cast<double>(n * piece) / write_s, static_cast<double>((n - 1) * piece) / read_s};
}

}  // namespace strata
