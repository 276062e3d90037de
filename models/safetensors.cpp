#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "core/error.h"

namespace strata {

static_assert(std::endian::native == std::endian::little,
              "safetensors and checkpoints are little-endian; big-endian hosts need byte swaps");

// ---------------------------------------------------------------------------------------------
// Number formats

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));  // inf/NaN
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

// ---------------------------------------------------------------------------------------------
// JSON: the writer escapes, the parser reads any valid JSON text (the header of a file written by
// another tool may use any escape, nesting or spacing).

namespace {

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through unchanged
        }
    }
  }
  return out + "\"";
}

struct JsonMember;

struct Json {
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  bool boolean = false;
  std::string text;  // string value, or the number's literal text (exact for int64 offsets)
  std::vector<Json> items;
  // File order. Not std::pair<std::string, Json>: a pair of a still-incomplete type does not
  // compile with clang (the fuzz build); a vector of one does (C++17).
  std::vector<JsonMember> members;
};

struct JsonMember {
  std::string key;
  Json value;
};

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& file) : s_(text), file_(file) {}

  Json parse_document() {
    Json v = value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;  // a hostile header must not overflow the stack

  [[noreturn]] void fail(const std::string& why) const {
    throw InputError(file_ + ": invalid safetensors header JSON at byte " +
                     std::to_string(pos_ + 8) + ": " + why);
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool consume_word(const char* w) {
    const size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) != 0) return false;
    pos_ += n;
    return true;
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    skip_ws();
    Json v;
    const char c = peek();
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      v.kind = Json::Kind::string;
      v.text = string();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Kind::number;
      v.text = number();
    } else if (consume_word("true")) {
      v.kind = Json::Kind::boolean;
      v.boolean = true;
    } else if (consume_word("false")) {
      v.kind = Json::Kind::boolean;
    } else if (!consume_word("null")) {
      fail("expected a value");
    }
    return v;
  }

  Json object(int depth) {
    Json v;
    v.kind = Json::Kind::object;
    expect('{');
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      std::string key = string();
      skip_ws();
      expect(':');
      v.members.push_back({std::move(key), value(depth + 1)});
      skip_ws();
      if (peek() != ',') break;
      ++pos_;
    }
    expect('}');
    return v;
  }

  Json array(int depth) {
    Json v;
    v.kind = Json::Kind::array;
    expect('[');
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      v.items.push_back(value(depth + 1));
      skip_ws();
      if (peek() != ',') break;
      ++pos_;
    }
    expect(']');
    return v;
  }

  std::string number() {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t d = pos_;
      while (peek() >= '0' && peek() <= '9') ++pos_;
      if (pos_ == d) fail("expected a digit");
    };
    if (peek() == '-') ++pos_;
    digits();
    if (peek() == '.') {
      ++pos_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits();
    }
    return s_.substr(start, pos_ - start);
  }

  uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        fail("bad hex digit in \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // \uXXXX, combining a UTF-16 surrogate pair into one code point.
  uint32_t unicode_escape() {
    uint32_t cp = hex4();
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (!consume_word("\\u")) fail("unpaired UTF-16 surrogate");
      const uint32_t lo = hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired UTF-16 surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      fail("unpaired UTF-16 surrogate");
    }
    return cp;
  }

  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("raw control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated string");
      switch (s_[pos_++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u':
          append_utf8(out, unicode_escape());
          break;
        default:
          fail("bad escape in string");
      }
    }
  }

  const std::string& s_;
  const std::string& file_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Export

constexpr int64_t kMaxHeader = 100 << 20;  // the reference implementation's limit

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const char* dtype_name(SafetensorsDType d) { return d == SafetensorsDType::BF16 ? "BF16" : "F32"; }
int64_t dtype_bytes(SafetensorsDType d) { return d == SafetensorsDType::BF16 ? 2 : 4; }

std::string build_header(const std::vector<SafeTensor>& tensors,
                         const std::map<std::string, std::string>& metadata,
                         SafetensorsDType dtype) {
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) h += ",";
      first = false;
      h += json_quote(k) + ":" + json_quote(v);
    }
    h += "}";
  }
  int64_t offset = 0;
  for (const SafeTensor& t : tensors) {
    const int64_t bytes = numel_of(t.shape) * dtype_bytes(dtype);
    if (h.size() > 1) h += ",";
    h += json_quote(t.name) + ":{\"dtype\":\"" + dtype_name(dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t.shape[i]);
    }
    h += "],\"data_offsets\":[";
    h += std::to_string(offset);
    h += ',';
    h += std::to_string(offset + bytes);
    h += "]}";
    offset += bytes;
  }
  h += "}";
  // Pad with spaces (valid JSON whitespace) so the data starts 8-byte aligned.
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

void check_tensors(const std::vector<SafeTensor>& tensors) {
  std::vector<std::string> names;
  for (const SafeTensor& t : tensors) {
    STRATA_CHECK(!t.name.empty() && t.name != "__metadata__", "bad tensor name '" + t.name + "'");
    for (int64_t d : t.shape) STRATA_CHECK(d >= 0, "negative dimension in " + t.name);
    STRATA_CHECK(t.data != nullptr || numel_of(t.shape) == 0, "null data for " + t.name);
    names.push_back(t.name);
  }
  std::sort(names.begin(), names.end());
  const auto dup = std::adjacent_find(names.begin(), names.end());
  STRATA_CHECK(dup == names.end(), "duplicate tensor name '" + *dup + "'");
}

void write_tensor_data(AtomicFile& f, const SafeTensor& t, SafetensorsDType dtype) {
  const int64_t n = numel_of(t.shape);
  if (dtype == SafetensorsDType::F32) {
    f.write(t.data, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  constexpr int64_t kChunk = 1 << 16;  // convert through a bounded buffer
  std::vector<uint16_t> buf(static_cast<size_t>(std::min(n, kChunk)));
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t k = std::min(kChunk, n - i);
    for (int64_t j = 0; j < k; ++j) buf[j] = fp32_to_bf16(t.data[i + j]);
    f.write(buf.data(), static_cast<size_t>(k) * sizeof(uint16_t));
  }
}

}  // namespace

void export_safetensors(const std::string& path, const std::vector<SafeTensor>& tensors,
                        const std::map<std::string, std::string>& metadata,
                        SafetensorsDType dtype) {
  check_tensors(tensors);
  const std::string header = build_header(tensors, metadata, dtype);
  STRATA_CHECK(static_cast<int64_t>(header.size()) <= kMaxHeader, "safetensors header too large");
  AtomicFile f(path);
  const uint64_t n = header.size();
  f.write(&n, sizeof(n));
  f.write(header.data(), header.size());
  for (const SafeTensor& t : tensors) write_tensor_data(f, t, dtype);
  f.commit();
}

// ---------------------------------------------------------------------------------------------
// Import

namespace {

class HeaderReader {
 public:
  HeaderReader(const std::string& file, int64_t data_size) : file_(file), data_size_(data_size) {}

  [[noreturn]] void fail(const std::string& why) const {
    throw InputError(file_ + ": invalid safetensors header: " + why);
  }

  int64_t non_negative_int(const Json& v, const std::string& what) const {
    if (v.kind != Json::Kind::number || v.text.empty() || v.text[0] == '-' ||
        v.text.find_first_of(".eE") != std::string::npos || v.text.size() > 18)
      fail(what + ": expected a non-negative integer");
    return std::stoll(v.text);
  }

  std::vector<int64_t> int_array(const Json& v, const std::string& what) const {
    if (v.kind != Json::Kind::array) fail(what + ": expected an array of integers");
    std::vector<int64_t> out;
    for (const Json& x : v.items) out.push_back(non_negative_int(x, what));
    return out;
  }

  std::map<std::string, std::string> metadata(const Json& v) const {
    if (v.kind != Json::Kind::object) fail("__metadata__: expected an object of strings");
    std::map<std::string, std::string> out;
    for (const auto& [k, x] : v.members) {
      if (x.kind != Json::Kind::string) fail("__metadata__." + k + ": expected a string");
      out[k] = x.text;
    }
    return out;
  }

  // Fills everything but data; returns the byte range [begin, end) within the data section.
  std::pair<int64_t, int64_t> tensor(const std::string& name, const Json& v,
                                     LoadedTensor& t) const {
    if (v.kind != Json::Kind::object) fail("tensor '" + name + "': expected an object");
    const Json* dtype = nullptr;
    const Json* shape = nullptr;
    const Json* offsets = nullptr;
    for (const auto& [k, x] : v.members) {
      if (k == "dtype") dtype = &x;
      if (k == "shape") shape = &x;
      if (k == "data_offsets") offsets = &x;
    }
    if (!dtype || !shape || !offsets)
      fail("tensor '" + name + "': expected keys dtype, shape and data_offsets");
    t.name = name;
    t.dtype = dtype->kind == Json::Kind::string ? dtype->text : "?";
    const int64_t elem = t.dtype == "F32" ? 4 : (t.dtype == "BF16" || t.dtype == "F16") ? 2 : 0;
    if (elem == 0)
      fail("tensor '" + name + "': unknown dtype '" + t.dtype + "' (expected F32, BF16 or F16)");
    t.shape = int_array(*shape, "tensor '" + name + "' shape");
    const std::vector<int64_t> off = int_array(*offsets, "tensor '" + name + "' data_offsets");
    if (off.size() != 2) fail("tensor '" + name + "': data_offsets must be [begin, end]");
    const int64_t bytes = checked_numel(name, t.shape, elem);
    if (off[0] > off[1] || off[1] > data_size_)
      fail("tensor '" + name + "': data_offsets [" + std::to_string(off[0]) + ", " +
           std::to_string(off[1]) + "] out of range (data section is " +
           std::to_string(data_size_) + " bytes)");
    if (off[1] - off[0] != bytes)
      fail("tensor '" + name + "': data_offsets span " + std::to_string(off[1] - off[0]) +
           " bytes but shape and dtype need " + std::to_string(bytes));
    return {off[0], off[1]};
  }

 private:
  // numel * elem in bytes, refusing shapes whose product overflows.
  int64_t checked_numel(const std::string& name, const std::vector<int64_t>& shape,
                        int64_t elem) const {
    int64_t n = elem;
    for (int64_t d : shape) {
      if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
        fail("tensor '" + name + "': shape too large");
      n *= d;
    }
    return n;
  }

  const std::string& file_;
  int64_t data_size_;
};

void convert_to_fp32(std::string_view raw, LoadedTensor& t) {
  const size_t elem = t.dtype == "F32" ? 4 : 2;
  t.data.resize(raw.size() / elem);
  if (elem == 4) {
    if (!raw.empty()) std::memcpy(t.data.data(), raw.data(), raw.size());
    return;
  }
  for (size_t i = 0; i < t.data.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, raw.data() + 2 * i, 2);
    t.data[i] = t.dtype == "BF16" ? bf16_to_fp32(h) : fp16_to_fp32(h);
  }
}

}  // namespace

const LoadedTensor* SafetensorsFile::find(const std::string& name) const {
  for (const LoadedTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source) {
  const auto file_size = static_cast<int64_t>(bytes.size());
  uint64_t n = 0;
  if (file_size < 8)
    throw InputError(source + ": not a safetensors file (shorter than the 8-byte header length)");
  std::memcpy(&n, bytes.data(), 8);
  if (n < 2 || n > static_cast<uint64_t>(kMaxHeader) || static_cast<int64_t>(n) > file_size - 8)
    throw InputError(source + ": invalid safetensors header length " + std::to_string(n) +
                     " (file is " + std::to_string(file_size) + " bytes)");
  const std::string header(bytes.substr(8, n));
  const Json root = JsonParser(header, source).parse_document();
  const int64_t data_start = 8 + static_cast<int64_t>(n);
  HeaderReader hr(source, file_size - data_start);
  if (root.kind != Json::Kind::object) hr.fail("expected a JSON object");

  SafetensorsFile out;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  std::set<std::string> seen;
  for (const auto& [name, v] : root.members) {
    if (name == "__metadata__") {
      out.metadata = hr.metadata(v);
      continue;
    }
    if (!seen.insert(name).second) hr.fail("duplicate tensor '" + name + "'");
    out.tensors.emplace_back();
    ranges.push_back(hr.tensor(name, v, out.tensors.back()));
  }
  // Tensors in file order: a deterministic order for callers, and sequential page faults.
  std::vector<size_t> order(out.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  std::vector<LoadedTensor> sorted;
  for (size_t i : order) {
    // hr.tensor checked the range lies inside the data section.
    const std::string_view raw =
        bytes.substr(static_cast<size_t>(data_start + ranges[i].first),
                     static_cast<size_t>(ranges[i].second - ranges[i].first));
    convert_to_fp32(raw, out.tensors[i]);
    sorted.push_back(std::move(out.tensors[i]));
  }
  out.tensors = std::move(sorted);
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open safetensors file: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file (expected a safetensors file)");
  }
  if (st.st_size == 0) {  // mmap refuses an empty file; the parser names what is wrong with it
    ::close(fd);
    return parse_safetensors({}, path);
  }
  // Mapped, not read: the tensors' bytes are converted straight from the page cache.
  const auto size = static_cast<size_t>(st.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED)
    throw InputError(path + ": cannot mmap safetensors file: " + std::strerror(errno));
  struct Unmap {
    void* p;
    size_t n;
    ~Unmap() { ::munmap(p, n); }
  } unmap{map, size};
  return parse_safetensors(std::string_view(static_cast<const char*>(map), size), path);
}

}  // namespace strata
