#include "launch/token_type.h"

#include <algorithm>

#include "core/error.h"

namespace strata {

namespace {

// Calls f with a null pointer of the C++ type stored as `t` (for template dispatch).
template <typename F>
void with_type(TokenType t, F&& f) {
  switch (t) {
    case TokenType::u8:
      return f(static_cast<const uint8_t*>(nullptr));
    case TokenType::i8:
      return f(static_cast<const int8_t*>(nullptr));
    case TokenType::i16:
      return f(static_cast<const int16_t*>(nullptr));
    case TokenType::u16:
      return f(static_cast<const uint16_t*>(nullptr));
    case TokenType::i32:
      return f(static_cast<const int32_t*>(nullptr));
    case TokenType::u32:
      return f(static_cast<const uint32_t*>(nullptr));
    case TokenType::i64:
      return f(static_cast<const int64_t*>(nullptr));
  }
}

template <typename T>
void check_typed(const T* tokens, int64_t n, int64_t vocab_size, const std::string& source) {
  if (n == 0) return;
  T lo = tokens[0], hi = tokens[0];
  for (int64_t i = 0; i < n; ++i) {  // vectorises
    lo = std::min(lo, tokens[i]);
    hi = std::max(hi, tokens[i]);
  }
  const auto below = [](T v) {
    if constexpr (std::is_signed_v<T>) return v < 0;
    return false;
  };
  const auto above = [&](T v) {
    return static_cast<uint64_t>(v) >= static_cast<uint64_t>(vocab_size);
  };
  if (!below(lo) && !above(hi)) return;
  for (int64_t i = 0; i < n; ++i)
    if (below(tokens[i]) || above(tokens[i]))
      throw InputError(source + ": token at index " + std::to_string(i) + " has value " +
                       std::to_string(tokens[i]) + ", expected 0 <= token < vocab_size " +
                       std::to_string(vocab_size));
}

}  // namespace

int64_t token_type_bytes(TokenType t) {
  int64_t bytes = 0;
  with_type(t, [&](auto* p) { bytes = sizeof(*p); });
  return bytes;
}

const char* token_type_name(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return "uint8";
    case TokenType::i8:
      return "int8";
    case TokenType::i16:
      return "int16";
    case TokenType::u16:
      return "uint16";
    case TokenType::i32:
      return "int32";
    case TokenType::u32:
      return "uint32";
    case TokenType::i64:
      return "int64";
  }
  return "?";
}

void copy_tokens(TokenType t, const unsigned char* src, int64_t begin, int64_t n, int32_t* dst) {
  with_type(t, [&](auto* type) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(type)>>;
    const T* from = reinterpret_cast<const T*>(src) + begin;
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int32_t>(from[i]);
  });
}

void check_tokens(TokenType t, const unsigned char* src, int64_t n, int64_t vocab_size,
                  const std::string& source) {
  with_type(t, [&](auto* type) {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(type)>>;
    check_typed(reinterpret_cast<const T*>(src), n, vocab_size, source);
  });
}

}  // namespace strata
