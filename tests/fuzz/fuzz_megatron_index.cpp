// A Megatron-LM .idx (MMIDIDX) on arbitrary bytes, checked as TokenShard checks one beside its
// .bin. Input: 4 bytes (little-endian) the .bin's size, then the .idx. An accepted index must
// account for exactly the .bin's bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "launch/megatron_index.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  if (size < 4) return 0;
  uint32_t bin_bytes = 0;
  std::memcpy(&bin_bytes, data, 4);
  const std::vector<unsigned char> idx(data + 4,
                                       data + size);  // its own allocation: ASan sees overreads
  fuzz::parse_or_input_error([&] {
    const MegatronIndex m = parse_megatron_index(idx.data(), static_cast<int64_t>(idx.size()),
                                                 bin_bytes, "fuzz.idx", "fuzz.bin");
    fuzz::require(m.num_tokens * token_type_bytes(m.type) == bin_bytes,
                  "accepted an index that does not cover the .bin");
    fuzz::require(m.sequences >= 0 && m.documents >= 0 && m.num_tokens >= 0, "negative counts");
    fuzz::require(kMegatronIndexHeaderBytes + 12 * m.sequences + 8 * (m.documents + 1) ==
                      static_cast<int64_t>(idx.size()),
                  "accepted an index whose size does not match its counts");
  });
  return 0;
}
