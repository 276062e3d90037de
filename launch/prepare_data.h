#pragma once
// `strata prepare-data`: text files -> token shards, with the byte-level tokenizer (default) or a
// SentencePiece model (given, or trained on the input first).
//
// Byte-level: vocabulary 256, token = byte value. Each input file is one document; every document
// is preceded by the separator token (byte-level 0, SentencePiece <s>; as llm.c precedes each
// document with <|endoftext|>); 0 is safe because files holding a NUL byte are skipped as binary.
// Split: the first (1 - val_fraction) of every document's bytes go to train and the rest to
// val, so every topic appears in both (with SentencePiece the cut moves back to a character
// boundary). Output: <out>/train_000000.bin, ..., <out>/val_000000.bin in llm.c's layout
// (uint16 GPT-2 layout for vocabularies up to 65536, else uint32 Llama-3 layout), and
// <out>/tokenizer.yaml (launch/tokenizer_info.h) with, for SentencePiece, <out>/tokenizer.model.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "launch/tokenizer.h"

namespace strata {

inline constexpr int64_t kByteVocabSize = 256;
inline constexpr int32_t kDocumentSeparator = 0;

struct PrepareDataOptions {
  std::vector<std::string> inputs;  // files or directories (searched recursively)
  std::string output_dir;
  double val_fraction = 0.05;  // in [0, 1)
  int64_t shard_tokens = 100'000'000;
  // 0: by the vocabulary (1 up to 65536 tokens, else 7); 1 = uint16 tokens (llm.c's GPT-2
  // layout), 7 = uint32 (llm.c's Llama-3 layout).
  int version = 0;
  std::string tokenizer = "byte";  // "byte" | "spm:MODEL_FILE"
  bool train_tokenizer = false;    // train a SentencePiece model on the train split first
  TokenizerTraining training;      // vocab_size, model_type
  // Text bytes the tokenizer is trained on at most, taken from every document in proportion.
  int64_t train_tokenizer_bytes = 200'000'000;
  bool progress = false;  // a line on stderr about every second: files, bytes, tokens, rate
};

struct PrepareDataSummary {
  int64_t files = 0;          // documents tokenized
  int64_t skipped_files = 0;  // binary, *.dat, empty, or another name of a file already included
  int64_t train_tokens = 0;   // separators included
  int64_t val_tokens = 0;
  int64_t removed_stale_shards = 0;  // train_/val_ shards of an earlier, larger run
  std::string tokenizer_kind;        // byte | sentencepiece
  int64_t vocab_size = 0;
  int version = 0;  // of the shards written
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  std::vector<std::string> documents;  // in the order they were tokenized
  std::vector<std::string> skipped;    // "path (reason)"
};

// The shard version for a vocabulary: `requested` (1 or 7), or with 0 the narrowest that holds
// every token (1 up to 65536 tokens, else 7). Version 1 for a larger vocabulary is an InputError.
int prepare_shard_version(int requested, int64_t vocab_size);

// Byte-level tokenizer: one token per byte.
std::vector<int32_t> encode_bytes(std::string_view text);
// Inverse of encode_bytes; a token outside 0..255 becomes '?'.
std::string decode_tokens(std::span<const int32_t> tokens);

// Deterministic: the same inputs give byte-identical shards. Errors (no inputs, an input that
// does not exist, bad options, an unwritable output, no text at all) are InputError.
PrepareDataSummary prepare_data(const PrepareDataOptions& options);

}  // namespace strata
