#pragma once
// The tokenizers of `strata prepare-data`: byte-level (the default: vocabulary 256, token = byte
// value, documents separated by token 0) and SentencePiece (Debian's libsentencepiece: a model
// file given with --tokenizer spm:FILE, or trained on the input with --train-tokenizer).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int64_t vocab_size() const = 0;
  // The token put before every document (llm.c puts <|endoftext|> there): 0 for bytes, the
  // model's <s> (else </s>) for SentencePiece.
  virtual int32_t document_separator() const = 0;
  // Appends the tokens of `text` to `out`. Thread-safe (const), so chunks encode in parallel.
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;
  virtual std::string decode(const std::vector<int32_t>& tokens) const = 0;
  // "byte", or "sentencepiece" (tokenizer.yaml's kind).
  virtual std::string kind() const = 0;
  bool byte_level() const { return kind() == "byte"; }
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();
// Loads a SentencePiece model file; InputError naming it when it is not one.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// "byte" or "spm:MODEL_FILE" (the --tokenizer flag); InputError for anything else.
std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec);

struct TokenizerTraining {
  int64_t vocab_size = 0;
  std::string model_type = "bpe";  // bpe | unigram
  int64_t max_sentences = 2'000'000;
};

// Trains a SentencePiece model on `lines` (one sentence each, no newlines) much as Llama's
// tokenizer was made: identity normalisation, whitespace kept, byte fallback (so any byte,
// newlines included, encodes), digits split; <unk> 0, <s> 1, </s> 2; but no dummy prefix, so
// the tokens of a text are those of its lines one after another. Returns the serialised
// model (the bytes of a .model file). InputError (naming the vocabulary size) when SentencePiece
// refuses, e.g. a vocabulary larger than the text supports.
std::string train_sentencepiece(const std::vector<std::string>& lines,
                                const TokenizerTraining& options);

}  // namespace strata
