#include "launch/yaml_values.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace strata::yaml_values {
namespace {

// Offset of the first byte that is not part of well-formed UTF-8 (no overlongs, surrogates or
// code points past U+10FFFF), or npos.
size_t invalid_utf8_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const unsigned c = p[i];
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c < 0x80)
      len = 1;
    else if (c >= 0xC2 && c <= 0xDF)
      len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
      len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
      len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
      return i;
    if (i + len > s.size()) return i;
    for (size_t k = 1; k < len; ++k) {
      const unsigned b = p[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
    }
    i += len;
  }
  return std::string::npos;
}

// YAML allows a leading '+' on numbers; std::from_chars does not.
std::string_view unsigned_text(const std::string& s) {
  std::string_view v(s);
  if (!v.empty() && v.front() == '+') v.remove_prefix(1);
  return v;
}

// Parses all of `text` as a T with std::from_chars; false on any leftover or range error.
template <class T>
bool parse_number(const std::string& text, T& out) {
  const std::string_view v = unsigned_text(text);
  if (v.empty()) return false;
  T value{};
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc() || end != v.data() + v.size()) return false;
  out = value;
  return true;
}

}  // namespace

// A value quoted in a message: long ones are cut, so a 10 MB value is not a 10 MB message.
std::string shown_value(const std::string& v) {
  constexpr size_t kShown = 80;
  // Appended piecewise: GCC 12 warns (-Wrestrict, falsely) on "'" + v once this is inlined.
  std::string text(1, '\'');
  text.append(v, 0, kShown);
  if (v.size() <= kShown) return text + "'";
  return text + "...' (" + std::to_string(v.size()) + " bytes)";
}

std::string describe(const YAML::Node& n) {
  if (n.IsNull()) return "an empty value";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a sequence";
  return shown_value(n.Scalar());
}

std::string read(const YAML::Node& n, int64_t& out) {
  if (!n.IsScalar() || !parse_number(n.Scalar(), out))
    return "expected an integer, got " + describe(n);
  return "";
}

std::string read(const YAML::Node& n, uint64_t& out) {
  if (!n.IsScalar() || !parse_number(n.Scalar(), out))
    return "expected a non-negative integer, got " + describe(n);
  return "";
}

std::string read(const YAML::Node& n, float& out) {
  float value = 0.f;
  if (!n.IsScalar() || !parse_number(n.Scalar(), value) || !std::isfinite(value))
    return "expected a number, got " + describe(n);
  out = value;
  return "";
}

std::string read(const YAML::Node& n, bool& out) {
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    const bool is_true = s == "true" || s == "True" || s == "TRUE";
    const bool is_false = s == "false" || s == "False" || s == "FALSE";
    if (is_true || is_false) {
      out = is_true;
      return "";
    }
  }
  return "expected true or false, got " + describe(n);
}

// An empty value (`val:`) is the empty string, which several keys use to mean "none/default".
// Strings name files and choices: a NUL byte would silently cut a path, and invalid UTF-8 would
// make the resolved config unreadable in the checkpoint manifest, so both are refused here.
std::string read(const YAML::Node& n, std::string& out) {
  if (!n.IsNull() && !n.IsScalar()) return "expected a string, got " + describe(n);
  const std::string v = n.IsNull() ? "" : n.Scalar();
  constexpr size_t kMaxString = 4096;  // PATH_MAX: every string key is a path or shorter
  if (v.size() > kMaxString)
    return "expected at most " + std::to_string(kMaxString) + " bytes, got " + describe(n);
  if (const size_t nul = v.find('\0'); nul != std::string::npos)
    return "expected text without NUL bytes, got one at byte " + std::to_string(nul);
  if (const size_t bad = invalid_utf8_at(v); bad != std::string::npos) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(v[bad]));
    return std::string("expected UTF-8 text, got the invalid byte ") + hex + " at byte " +
           std::to_string(bad);
  }
  out = v;
  return "";
}

// Each entry is checked as an integer key would be, and named by its position when it is not.
std::string read(const YAML::Node& n, std::vector<int64_t>& out) {
  if (n.IsNull()) {
    out.clear();
    return "";
  }
  if (!n.IsSequence())
    return "expected a sequence of integers (e.g. [2, 1, 1]), got " + describe(n);
  constexpr size_t kMaxEntries = 65536;  // model.n_layers' bound: one entry per stage at most
  if (n.size() > kMaxEntries)
    return "expected at most " + std::to_string(kMaxEntries) + " entries, got " +
           std::to_string(n.size());
  std::vector<int64_t> values;
  for (size_t i = 0; i < n.size(); ++i) {
    int64_t v = 0;
    if (const std::string err = read(n[i], v); !err.empty())
      return "entry " + std::to_string(i) + ": " + err;
    values.push_back(v);
  }
  out = values;
  return "";
}

// Writing a value back as YAML text (dump_job_config). Floats use %.9g: enough digits for every
// float32 to parse back bit-identically.

std::string format_value(int64_t v) { return std::to_string(v); }
std::string format_value(uint64_t v) { return std::to_string(v); }
std::string format_value(bool v) { return v ? "true" : "false"; }
std::string format_value(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

// Plain when it reads back as the same string; otherwise double-quoted with escapes.
std::string format_value(const std::string& s) {
  const bool safe_chars = std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_./-+", c) != nullptr;
  });
  const bool is_null_word = s == "null" || s == "Null" || s == "NULL";
  if (!s.empty() && safe_chars && !is_null_word && s.front() != '-') return s;
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      q += '\\';
      q += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      q += buf;
    } else {
      q += c;
    }
  }
  return q + "\"";
}

std::string format_value(const std::vector<int64_t>& v) {
  std::string text = "[";
  for (size_t i = 0; i < v.size(); ++i) text += (i ? ", " : "") + std::to_string(v[i]);
  return text + "]";
}

}  // namespace strata::yaml_values
