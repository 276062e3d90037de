#pragma once
// A small token corpus for trainer tests: <dir>/train_000000.bin holds all of `text` as byte
// tokens, <dir>/val_000000.bin its first `val_tokens`.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "launch/data.h"
#include "launch/prepare_data.h"

namespace strata::test {

inline void write_test_corpus(const std::string& dir, const std::string& text, int64_t val_tokens) {
  const auto toks = encode_bytes(text);
  write_token_shard(dir + "/train_000000.bin", toks);
  const auto n = static_cast<std::ptrdiff_t>(std::min<int64_t>(val_tokens, std::ssize(toks)));
  write_token_shard(dir + "/val_000000.bin", std::vector<int32_t>(toks.begin(), toks.begin() + n));
}

}  // namespace strata::test
