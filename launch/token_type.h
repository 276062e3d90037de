#pragma once
// The integer types token files store tokens in (llm.c shards: uint16, uint32; Megatron .bin:
// any integer dtype of its index), read in place from a mapped file and widened to int32.
#include <cstdint>
#include <string>

namespace strata {

enum class TokenType : uint8_t { u8, i8, i16, u16, i32, u32, i64 };

int64_t token_type_bytes(TokenType t);
const char* token_type_name(TokenType t);  // "uint16", "int32", ...

// Copies tokens [begin, begin + n) of the array `src` (stored as `t`) into dst as int32. The
// tokens must have been checked (check_tokens) to lie in [0, vocab_size), vocab_size <= 2^31.
void copy_tokens(TokenType t, const unsigned char* src, int64_t begin, int64_t n, int32_t* dst);

// Throws an InputError naming `source`, the index and the value of the first of the n tokens
// that is negative or >= vocab_size. One vectorised min/max pass when all are in range.
void check_tokens(TokenType t, const unsigned char* src, int64_t n, int64_t vocab_size,
                  const std::string& source);

}  // namespace strata
