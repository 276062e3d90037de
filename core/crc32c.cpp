#include "core/crc32c.h"

#include <array>
#include <cstring>

#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

namespace strata {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // the Castagnoli polynomial, bit-reflected

constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kTable = make_table();

// Raw CRC updates without the pre/post inversion, which crc32c() applies once per call.
uint32_t update_table(uint32_t crc, const unsigned char* p, size_t n) {
  for (; n > 0; --n, ++p) crc = kTable[(crc ^ *p) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__SSE4_2__)
uint32_t update_sse42(uint32_t crc, const unsigned char* p, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);  // unaligned-safe load
    c = _mm_crc32_u64(c, word);
  }
  crc = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) crc = _mm_crc32_u8(crc, *p);
  return crc;
}
#endif

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__SSE4_2__)
  return ~update_sse42(~seed, p, n);
#else
  return ~update_table(~seed, p, n);
#endif
}

uint32_t crc32c_portable(const void* data, size_t n, uint32_t seed) {
  return ~update_table(~seed, static_cast<const unsigned char*>(data), n);
}

}  // namespace strata
