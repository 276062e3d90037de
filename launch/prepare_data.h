#pragma once
// `strata prepare-data`: text files -> token shards with a byte-level tokenizer.
//
// Tokenizer: vocabulary 256, token = byte value. Each input file is one document; every document
// is preceded by the separator token 0 (as llm.c precedes each document with <|endoftext|>),
// which is safe because files holding a NUL byte are skipped as binary.
// Split: the first (1 - val_fraction) of every document's bytes go to train and the rest to
// val, so every topic appears in both. Output: <out>/train_000000.bin, ..., <out>/val_000000.bin.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

inline constexpr int64_t kByteVocabSize = 256;
inline constexpr int32_t kDocumentSeparator = 0;

struct PrepareDataOptions {
  std::vector<std::string> inputs;  // files or directories (searched recursively)
  std::string output_dir;
  double val_fraction = 0.05;  // in [0, 1)
  int64_t shard_tokens = 100'000'000;
  int version = 1;  // 1 = uint16 tokens (llm.c), 2 = uint32
};

struct PrepareDataSummary {
  int64_t files = 0;          // documents tokenized
  int64_t skipped_files = 0;  // binary, *.dat, empty, or another name of a file already included
  int64_t train_tokens = 0;   // separators included
  int64_t val_tokens = 0;
  int64_t removed_stale_shards = 0;  // train_/val_ shards of an earlier, larger run
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  std::vector<std::string> documents;  // in the order they were tokenized
  std::vector<std::string> skipped;    // "path (reason)"
};

// Byte-level tokenizer: one token per byte.
std::vector<int32_t> encode_bytes(std::string_view text);
// Inverse of encode_bytes; a token outside 0..255 becomes '?'.
std::string decode_tokens(std::span<const int32_t> tokens);

// Deterministic: the same inputs give byte-identical shards. Errors (no inputs, an input that
// does not exist, bad options, an unwritable output, no text at all) are InputError.
PrepareDataSummary prepare_data(const PrepareDataOptions& options);

}  // namespace strata
