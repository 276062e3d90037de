#include "launch/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>

#include "core/error.h"

namespace strata {

namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  int64_t vocab_size() const override { return 256; }
  int32_t document_separator() const override { return 0; }
  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    for (char ch : text) out.push_back(static_cast<unsigned char>(ch));
  }
  std::string decode(const std::vector<int32_t>& tokens) const override {
    std::string text(tokens.size(), '?');
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] >= 0 && tokens[i] < 256) text[i] = static_cast<char>(tokens[i]);
    return text;
  }
  std::string kind() const override { return "byte"; }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    const auto status = sp_.Load(path);
    if (!status.ok())
      throw InputError(path +
                       ": not a SentencePiece model (libsentencepiece: " + status.ToString() + ")");
    separator_ = sp_.bos_id() >= 0 ? sp_.bos_id() : sp_.eos_id();
    if (separator_ < 0)
      throw InputError(path +
                       ": the SentencePiece model has neither <s> nor </s>, so no token "
                       "can separate documents (train it with bos_id or eos_id >= 0)");
  }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t document_separator() const override { return separator_; }
  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(absl::string_view(text.data(), text.size()), &ids);
    if (!status.ok())  // only for a broken model: Encode accepts any bytes
      throw StrataError(path_ + ": SentencePiece cannot encode: " + status.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  std::string decode(const std::vector<int32_t>& tokens) const override {
    std::string text;
    const std::vector<int> ids(tokens.begin(), tokens.end());
    if (!sp_.Decode(ids, &text).ok()) return "?";
    return text;
  }
  std::string kind() const override { return "sentencepiece"; }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  int32_t separator_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec) {
  if (spec == "byte") return make_byte_tokenizer();
  if (spec.rfind("spm:", 0) == 0 && spec.size() > 4) return load_sentencepiece(spec.substr(4));
  throw InputError("--tokenizer: expected 'byte' or 'spm:MODEL_FILE', got '" + spec + "'");
}

}  // namespace strata
