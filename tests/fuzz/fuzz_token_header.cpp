// A token shard (llm.c .bin) on arbitrary bytes, checked as TokenShard checks a mapped file, for
// the byte-level vocabulary of configs/tiny.yaml. An accepted shard must be exactly its header
// plus the tokens it declares, each inside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "launch/data.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata;
  constexpr int64_t kVocab = 256;
  // parse_token_shard reads tokens in place, as from an mmap: give it 4-byte aligned bytes.
  std::vector<uint32_t> aligned((size + 3) / 4);
  if (size > 0) std::memcpy(aligned.data(), data, size);
  const auto* bytes = reinterpret_cast<const unsigned char*>(aligned.data());
  const auto n = static_cast<int64_t>(size);
  fuzz::parse_or_input_error([&] {
    const TokenShardHeader h = parse_token_shard(bytes, n, kVocab, "fuzz.bin");
    const int64_t width = shard_token_width(h.version);
    fuzz::require(width > 0, "unknown version accepted");
    fuzz::require(kShardHeaderBytes + h.num_tokens * width == n, "size does not match header");
    for (int64_t i = 0; i < h.num_tokens; ++i) {
      uint32_t t = 0;
      std::memcpy(&t, bytes + kShardHeaderBytes + i * width, static_cast<size_t>(width));
      fuzz::require(t < kVocab, "token outside the vocabulary accepted");
    }
  });
  return 0;
}
