#pragma once
// tokenizer.yaml: what `strata prepare-data` writes beside its shards to say which tokenizer made
// them, so the trainer can check model.vocab_size against it before step 1.
//   kind: sentencepiece          # or byte
//   model: tokenizer.model       # sentencepiece: the model file, beside this one
//   vocab_size: 1000
//   separator: 1                 # the token before every document
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace strata {

inline constexpr const char* kTokenizerInfoFile = "tokenizer.yaml";

struct TokenizerInfo {
  std::string kind;   // byte | sentencepiece
  std::string model;  // file name, relative to the directory of tokenizer.yaml
  int64_t vocab_size = 0;
  int32_t separator = 0;
};

void write_tokenizer_info(const std::string& dir, const TokenizerInfo& info);
// The tokenizer.yaml of `dir`, or nothing when there is none. A malformed one is an InputError
// naming it and the key.
std::optional<TokenizerInfo> read_tokenizer_info(const std::string& dir);

// For each directory holding one of `shards`: a SentencePiece tokenizer.yaml whose vocab_size
// is not `vocab_size` is an InputError naming both (the byte tokenizer is not checked: any
// vocabulary holding its tokens serves, and every token is checked when a shard opens).
void check_tokenizer_vocab(const std::vector<std::string>& shards, int64_t vocab_size);

}  // namespace strata
