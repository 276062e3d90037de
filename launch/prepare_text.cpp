#include "launch/prepare_text.h"

#include <algorithm>

#include "core/error.h"

namespace strata {

namespace {

constexpr size_t kPieceBytes = size_t{1} << 20;

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

size_t utf8_boundary(std::string_view text, size_t pos) {
  pos = std::min(pos, text.size());
  // At most 3 continuation bytes follow a lead byte; anything longer is not UTF-8: cut anyway.
  for (size_t back = 0; back < 4 && pos > 0 && pos < text.size() && continuation(text[pos]); ++back)
    --pos;
  return pos;
}

std::vector<std::string_view> text_pieces(std::string_view text, size_t max_bytes) {
  std::vector<std::string_view> pieces;
  while (text.size() > max_bytes) {
    const std::string_view window = text.substr(0, max_bytes);
    size_t cut = window.rfind('\n');
    if (cut == std::string_view::npos) cut = window.rfind(' ');
    cut = cut == std::string_view::npos ? utf8_boundary(text, max_bytes) : cut + 1;
    if (cut == 0) cut = max_bytes;  // no boundary at all: bytes, not text
    pieces.push_back(text.substr(0, cut));
    text.remove_prefix(cut);
  }
  if (!text.empty()) pieces.push_back(text);
  return pieces;
}

void encode_document(const Tokenizer& tok, std::string_view text, std::vector<int32_t>& out) {
  if (tok.byte_level() || text.size() <= kPieceBytes) {
    tok.encode(text, out);
    return;
  }
  const std::vector<std::string_view> pieces = text_pieces(text, kPieceBytes);
  std::vector<std::vector<int32_t>> ids(pieces.size());
  const auto n = static_cast<int64_t>(pieces.size());
  // Encode is const and thread-safe in libsentencepiece; an exception must not leave the region.
  std::vector<std::string> errors(pieces.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      tok.encode(pieces[static_cast<size_t>(i)], ids[static_cast<size_t>(i)]);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(i)] = e.what();
    }
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!errors[i].empty()) throw StrataError(errors[i]);
    out.insert(out.end(), ids[i].begin(), ids[i].end());
  }
}

int64_t take_lines(std::string_view text, int64_t budget, std::vector<std::string>& lines) {
  int64_t taken = 0;
  while (!text.empty() && taken < budget) {
    const size_t end = std::min(text.find('\n'), text.size());
    if (end > 0) {
      lines.emplace_back(text.substr(0, end));
      taken += static_cast<int64_t>(end);
    }
    text.remove_prefix(std::min(end + 1, text.size()));
  }
  return taken;
}

}  // namespace strata
