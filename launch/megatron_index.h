#pragma once
// Megatron-LM's indexed dataset (megatron/core/datasets/indexed_dataset.py, "MMIDIDX"): a pair
// PREFIX.bin (the tokens of every sequence, back to back, no header) and PREFIX.idx:
//   9 bytes  "MMIDIDX\0\0"
//   <Q       version, 1
//   <B       dtype code of the .bin tokens: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
//            6 float64, 7 float32, 8 uint16 (the floats are refused: not tokens)
//   <Q       sequence count S
//   <Q       document count D (entries of the document index: documents + 1)
//   S x <i4  sequence lengths, in tokens
//   S x <i8  sequence pointers, byte offsets into the .bin
//   D x <i8  document index: the first sequence of every document, then S
// Strata reads the .bin as one token stream, sequences in file order, so it requires what
// Megatron's writer produces: pointers that lay the sequences end to end from offset 0, a
// document index rising from 0 to S, and lengths that add up to the .bin's size.
#include <cstdint>
#include <string>

#include "launch/token_type.h"

namespace strata {

inline constexpr char kMegatronIndexMagic[] = "MMIDIDX\0\0";  // 9 bytes (sizeof - 1)
inline constexpr int64_t kMegatronIndexHeaderBytes = 9 + 8 + 1 + 8 + 8;

struct MegatronIndex {
  TokenType type = TokenType::u16;
  int64_t sequences = 0;
  int64_t documents = 0;  // document index entries - 1
  int64_t num_tokens = 0;
};

// Validates the .idx bytes against a .bin of `bin_bytes` bytes. InputError naming `idx_source`
// (or `bin_source` for a size mismatch) and the field that is wrong.
MegatronIndex parse_megatron_index(const unsigned char* idx, int64_t idx_bytes, int64_t bin_bytes,
                                   const std::string& idx_source, const std::string& bin_source);

// "x/corpus_text_document.bin" -> "x/corpus_text_document.idx".
std::string megatron_index_path(const std::string& bin_path);
// A .bin with an .idx beside it is a Megatron dataset (an llm.c shard has none).
bool has_megatron_index(const std::string& bin_path);

}  // namespace strata
