#include "launch/megatron_index.h"

#include <bit>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace strata {

static_assert(std::endian::native == std::endian::little,
              "Megatron index files are little endian; big-endian hosts need byte swaps");

namespace {

// Reads a little-endian T at byte `at` (the .idx arrays start at offset 34: not aligned).
template <typename T>
T read_at(const unsigned char* p, int64_t at) {
  T v;
  std::memcpy(&v, p + at, sizeof v);
  return v;
}

bool token_type_of_code(uint8_t code, TokenType* t) {
  switch (code) {
    case 1:
      *t = TokenType::u8;
      return true;
    case 2:
      *t = TokenType::i8;
      return true;
    case 3:
      *t = TokenType::i16;
      return true;
    case 4:
      *t = TokenType::i32;
      return true;
    case 5:
      *t = TokenType::i64;
      return true;
    case 8:
      *t = TokenType::u16;
      return true;
    default:
      return false;
  }
}

std::string indexed(const char* field, int64_t i) {
  return std::string(field) + "[" + std::to_string(i) + "]";
}

struct IndexReader {
  const unsigned char* p;
  int64_t size;
  const std::string& source;

  [[noreturn]] void fail(const std::string& field, const std::string& why) const {
    throw InputError(source + ": Megatron index field " + field + ": " + why);
  }

  void header(MegatronIndex& m, uint64_t* documents) const {
    if (size < kMegatronIndexHeaderBytes || std::memcmp(p, kMegatronIndexMagic, 9) != 0)
      throw InputError(source +
                       ": bad magic (expected a Megatron-LM index starting with "
                       "\"MMIDIDX\\0\\0\", " +
                       std::to_string(kMegatronIndexHeaderBytes) + "-byte header; file has " +
                       std::to_string(size) + " bytes)");
    const auto version = read_at<uint64_t>(p, 9);
    if (version != 1) fail("version", std::to_string(version) + ", expected 1");
    const auto code = read_at<uint8_t>(p, 17);
    if (!token_type_of_code(code, &m.type))
      fail("dtype", "code " + std::to_string(code) +
                        ", expected an integer dtype (1 uint8, 2 int8, 3 int16, 4 int32, "
                        "5 int64, 8 uint16)");
    const auto sequences = read_at<uint64_t>(p, 18);
    *documents = read_at<uint64_t>(p, 26);
    // Bounded by the file size before anything is multiplied, so no product overflows.
    if (sequences > static_cast<uint64_t>(size) / 12)
      fail("sequence_count",
           std::to_string(sequences) + " does not fit a " + std::to_string(size) + "-byte index");
    if (*documents > static_cast<uint64_t>(size) / 8)
      fail("document_count",
           std::to_string(*documents) + " does not fit a " + std::to_string(size) + "-byte index");
    m.sequences = static_cast<int64_t>(sequences);
    const int64_t expected =
        kMegatronIndexHeaderBytes + 12 * m.sequences + 8 * static_cast<int64_t>(*documents);
    if (size != expected)
      throw InputError(source + ": " + (size < expected ? "truncated" : "trailing data") +
                       ": sequence_count " + std::to_string(m.sequences) + " and document_count " +
                       std::to_string(*documents) + " need " + std::to_string(expected) +
                       " bytes but the index has " + std::to_string(size));
  }

  // Lengths >= 0 and pointers laying the sequences end to end; returns the token count.
  int64_t sequences(const MegatronIndex& m) const {
    const int64_t width = token_type_bytes(m.type);
    const int64_t lengths = kMegatronIndexHeaderBytes, pointers = lengths + 4 * m.sequences;
    int64_t tokens = 0;
    for (int64_t i = 0; i < m.sequences; ++i) {
      const auto len = read_at<int32_t>(p, lengths + 4 * i);
      const auto ptr = read_at<int64_t>(p, pointers + 8 * i);
      // Messages are built only on failure: this loop runs once per sequence.
      if (len < 0) fail(indexed("sequence_lengths", i), std::to_string(len) + ", expected >= 0");
      if (ptr != tokens * width)
        fail(indexed("sequence_pointers", i),
             std::to_string(ptr) + ", expected " + std::to_string(tokens * width) +
                 " (the sequences must lie end to end in the .bin, in order, from offset 0)");
      tokens += len;
    }
    return tokens;
  }

  void document_index(const MegatronIndex& m, uint64_t documents) const {
    if (documents == 0) fail("document_count", "0, expected >= 1 (the index starts with 0)");
    const int64_t at = kMegatronIndexHeaderBytes + 12 * m.sequences;
    int64_t prev = 0;
    for (uint64_t d = 0; d < documents; ++d) {
      const auto v = read_at<int64_t>(p, at + 8 * static_cast<int64_t>(d));
      if (d == 0 && v != 0) fail("document_indices[0]", std::to_string(v) + ", expected 0");
      if (v < prev || v > m.sequences)
        fail(indexed("document_indices", static_cast<int64_t>(d)),
             std::to_string(v) + ", expected " + std::to_string(prev) + ".." +
                 std::to_string(m.sequences) + " (rising sequence indices)");
      prev = v;
    }
    if (prev != m.sequences)
      fail(indexed("document_indices", static_cast<int64_t>(documents - 1)),
           std::to_string(prev) + ", expected the sequence count " + std::to_string(m.sequences));
  }
};

}  // namespace

MegatronIndex parse_megatron_index(const unsigned char* idx, int64_t idx_bytes, int64_t bin_bytes,
                                   const std::string& idx_source, const std::string& bin_source) {
  const IndexReader r{idx, idx_bytes, idx_source};
  MegatronIndex m;
  uint64_t documents = 0;
  r.header(m, &documents);
  m.num_tokens = r.sequences(m);
  r.document_index(m, documents);
  m.documents = static_cast<int64_t>(documents) - 1;
  const int64_t expected = m.num_tokens * token_type_bytes(m.type);
  if (bin_bytes != expected)
    throw InputError(bin_source + ": " + (bin_bytes < expected ? "truncated" : "trailing data") +
                     ": the sequence_lengths of " + idx_source + " add up to " +
                     std::to_string(m.num_tokens) + " " + token_type_name(m.type) + " tokens (" +
                     std::to_string(expected) + " bytes) but the .bin has " +
                     std::to_string(bin_bytes) + " bytes");
  return m;
}

std::string megatron_index_path(const std::string& bin_path) {
  return std::filesystem::path(bin_path).replace_extension(".idx").string();
}

bool has_megatron_index(const std::string& bin_path) {
  std::error_code ec;
  return std::filesystem::path(bin_path).extension() == ".bin" &&
         std::filesystem::is_regular_file(megatron_index_path(bin_path), ec);
}

}  // namespace strata
