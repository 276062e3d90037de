// SentencePiece training for `prepare-data --train-tokenizer` (declared in launch/tokenizer.h).
#include <sentencepiece_trainer.h>

#include <thread>
#include <unordered_map>

#include "core/error.h"
#include "launch/tokenizer.h"

namespace strata {

namespace {

// Feeds prepare-data's own selection of text (train split only, binary files skipped) to the
// trainer, instead of SentencePiece reading files itself.
class LineIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& lines_;
  size_t i_ = 0;
};

}  // namespace

std::string train_sentencepiece(const std::vector<std::string>& lines, const TokenizerTraining& o) {
  const std::string what = "prepare-data --train-tokenizer --vocab-size " +
                           std::to_string(o.vocab_size) + " --tokenizer-type " + o.model_type;
  if (o.model_type != "bpe" && o.model_type != "unigram")
    throw InputError("prepare-data: --tokenizer-type: expected bpe or unigram, got '" +
                     o.model_type + "'");
  // Byte fallback needs 256 byte pieces plus <unk>, <s>, </s> before any learned piece.
  if (o.vocab_size < 300 || o.vocab_size > (int64_t{1} << 31) - 1)
    throw InputError("prepare-data: --vocab-size " + std::to_string(o.vocab_size) +
                     " is out of range (expected 300 .. 2^31-1: 256 byte pieces and <unk>, "
                     "<s>, </s> come first)");
  if (lines.empty()) throw InputError(what + ": no text to train the tokenizer on");
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", o.model_type},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      // No "▁" is invented at the start of a text, so encoding a long document in pieces cut
      // after newlines gives the tokens of encoding it whole.
      {"add_dummy_prefix", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"input_sentence_size", std::to_string(o.max_sentences)},
      {"shuffle_input_sentence", "false"},  // the first sentences: the same model every run
      {"num_threads", std::to_string(threads)},
      {"minloglevel", "2"},  // its per-iteration INFO lines would bury prepare-data's output
  };
  LineIterator it(lines);
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!status.ok())
    throw InputError(what + ": SentencePiece refused: " + status.ToString() +
                     " (a smaller --vocab-size, or more text, may fit)");
  return model;
}

}  // namespace strata
