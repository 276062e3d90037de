#pragma once
// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and most storage formats. Checkpoints use
// it because x86 computes it in hardware (SSE4.2), so verifying a checkpoint costs little more
// than reading it.
#include <cstddef>
#include <cstdint>

namespace strata {

// CRC-32C of data[0..n): the SSE4.2 instruction when built with it, else crc32c_portable.
// `seed` is a previous result, so checksums chain:
// crc32c(b, nb, crc32c(a, na)) == the CRC of a followed by b.
uint32_t crc32c(const void* data, size_t n, uint32_t seed = 0);

// Table-driven CRC-32C, always compiled, so tests can check the hardware path against it.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t seed = 0);

}  // namespace strata
