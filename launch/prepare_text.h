#pragma once
// Text helpers of `strata prepare-data` around the tokenizer: where to cut a document so no
// character is split, encoding a long document in parallel pieces, and the sample of lines a
// SentencePiece model is trained on.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "launch/tokenizer.h"

namespace strata {

// The largest i <= pos that does not fall inside a UTF-8 sequence (never past text.size()).
size_t utf8_boundary(std::string_view text, size_t pos);

// Pieces of at most about `max_bytes` that together are `text`, each cut after a newline (else
// a space, else at a character boundary): a SentencePiece model sees lines, so a cut there
// changes the tokens least.
std::vector<std::string_view> text_pieces(std::string_view text, size_t max_bytes);

// Appends the tokens of `text`. Byte-level: one token per byte. Otherwise the pieces of
// text_pieces(text, 1 MiB) are encoded in parallel and concatenated in order, so the result is
// the same for any thread count and a long document needs no whole-text buffers.
void encode_document(const Tokenizer& tok, std::string_view text, std::vector<int32_t>& out);

// Appends the non-empty lines of `text` (without their newline) to `lines` until `budget` bytes
// are taken; returns the bytes taken.
int64_t take_lines(std::string_view text, int64_t budget, std::vector<std::string>& lines);

}  // namespace strata
