// SentencePiece through libsentencepiece: training on prepare-data's text, encoding long
// documents in parallel pieces, the tokenizer stored beside the shards, and model.vocab_size
// checked against it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "input_error_util.h"
#include "launch/data.h"
#include "launch/prepare_data.h"
#include "launch/prepare_text.h"
#include "launch/tokenizer.h"
#include "launch/tokenizer_info.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test::expect_input_error;

// Varied English-like text: enough distinct words for a few hundred pieces.
std::string corpus_text(int paragraphs, int seed) {
  static const char* words[] = {"model", "token", "layer",  "attention", "linear", "state",
                                "train", "shard", "corpus", "piece",     "vocab",  "byte",
                                "the",   "a",     "of",     "and",       "with",   "learns"};
  std::string text;
  uint32_t x = static_cast<uint32_t>(seed) * 2654435761u + 1;
  for (int p = 0; p < paragraphs; ++p) {
    for (int w = 0; w < 12; ++w) {
      x = x * 1664525u + 1013904223u;
      text += words[(x >> 16) % 18];
      text += (w % 5 == 4) ? ", " : " ";
    }
    text += std::to_string(p) + ".\n";
  }
  return text;
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata_test_tokenizer_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/in");
    for (int i = 0; i < 3; ++i)
      std::ofstream(dir_ + "/in/doc" + std::to_string(i) + ".txt") << corpus_text(300, i);
  }
  void TearDown() override { fs::remove_all(dir_); }
  PrepareDataOptions trained(int64_t vocab, const std::string& type = "bpe") const {
    PrepareDataOptions o;
    o.inputs = {dir_ + "/in"};
    o.output_dir = dir_ + "/out";
    o.train_tokenizer = true;
    o.training.vocab_size = vocab;
    o.training.model_type = type;
    return o;
  }
  std::string dir_;
};

std::vector<int32_t> tokens_of(const std::vector<std::string>& shards, int64_t vocab) {
  std::vector<int32_t> all;
  for (const auto& p : shards) {
    const TokenShard s(p, vocab);
    std::vector<int32_t> t(static_cast<size_t>(s.size()));
    s.copy(0, s.size(), t.data());
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

TEST_F(TokenizerTest, TrainedBpeModelIsStoredBesideTheShardsAndEncodesTheText) {
  const PrepareDataSummary s = prepare_data(trained(400));
  EXPECT_EQ(s.tokenizer_kind, "sentencepiece");
  EXPECT_EQ(s.vocab_size, 400);
  EXPECT_EQ(s.version, 1);
  const auto info = read_tokenizer_info(dir_ + "/out");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->kind, "sentencepiece");
  EXPECT_EQ(info->model, "tokenizer.model");
  EXPECT_EQ(info->vocab_size, 400);
  EXPECT_EQ(info->separator, 1);  // <s>

  const auto tok = load_sentencepiece(dir_ + "/out/tokenizer.model");
  EXPECT_EQ(tok->vocab_size(), 400);
  const std::vector<int32_t> train = tokens_of(s.train_shards, 400);
  // Fewer tokens than bytes (pieces are learned), every document behind a separator, and the
  // first document's tokens decode to its text (byte fallback keeps the newlines).
  EXPECT_LT(s.train_tokens, 3 * 300 * 60);
  ASSERT_FALSE(train.empty());
  EXPECT_EQ(train[0], 1);
  EXPECT_EQ(std::count(train.begin(), train.end(), 1), 3);
  const auto second = std::find(train.begin() + 1, train.end(), 1);
  const std::string doc0 = tok->decode(std::vector<int32_t>(train.begin() + 1, second));
  EXPECT_EQ(doc0, corpus_text(300, 0).substr(0, doc0.size()));
  EXPECT_GT(doc0.size(), 10000u);
}

TEST_F(TokenizerTest, UnigramTrainsAndGivenModelEncodesTheSame) {
  const PrepareDataSummary a = prepare_data(trained(300, "unigram"));
  EXPECT_EQ(a.vocab_size, 300);
  fs::rename(dir_ + "/out/tokenizer.model", dir_ + "/given.model");
  PrepareDataOptions o = trained(0);
  o.train_tokenizer = false;
  o.tokenizer = "spm:" + dir_ + "/given.model";
  o.output_dir = dir_ + "/out2";
  const PrepareDataSummary b = prepare_data(o);
  EXPECT_EQ(tokens_of(b.train_shards, 300), tokens_of(a.train_shards, 300));
  EXPECT_TRUE(fs::exists(dir_ + "/out2/tokenizer.model"));  // copied beside the shards
}

TEST_F(TokenizerTest, LongDocumentEncodesInPiecesCutAfterNewlines) {
  const std::string text = corpus_text(20000, 7);  // about 1.5 MB: two 1 MiB pieces
  const auto pieces = text_pieces(text, size_t{1} << 20);
  ASSERT_GE(pieces.size(), 2u);
  std::string joined;
  for (auto p : pieces) {
    EXPECT_LE(p.size(), size_t{1} << 20);
    joined += p;
  }
  EXPECT_EQ(joined, text);
  EXPECT_EQ(pieces[0].back(), '\n');
  prepare_data(trained(400));
  const auto tok = load_sentencepiece(dir_ + "/out/tokenizer.model");
  std::vector<int32_t> whole, parts;
  encode_document(*tok, text, whole);
  for (auto p : pieces) tok->encode(p, parts);
  EXPECT_TRUE(whole == parts);  // (EXPECT_EQ would print megabytes)
  EXPECT_TRUE(tok->decode(whole) == text);
  // No dummy prefix: the pieces' tokens are those of the whole text in one call.
  std::vector<int32_t> one_call;
  tok->encode(text, one_call);
  EXPECT_TRUE(one_call == whole);
}

TEST_F(TokenizerTest, Utf8CutsNeverSplitACharacter) {
  const std::string s = "a\xc3\xa9z";  // a é z
  EXPECT_EQ(utf8_boundary(s, 2), 1u);
  EXPECT_EQ(utf8_boundary(s, 3), 3u);
  EXPECT_EQ(utf8_boundary(s, 9), 4u);
}

TEST_F(TokenizerTest, VocabSizeMismatchNamesBoth) {
  const PrepareDataSummary s = prepare_data(trained(400));
  expect_input_error([&] { ShardSet(dir_ + "/out/train", 16, 512); },
                     "model.vocab_size is 512 but the tokenizer of the data in");
  expect_input_error([&] { ShardSet(dir_ + "/out/train", 16, 512); }, "has vocab_size 400");
  EXPECT_NO_THROW(ShardSet(dir_ + "/out/train", 16, 400));
}

TEST_F(TokenizerTest, BadTokenizerInputsAreInputErrors) {
  std::ofstream(dir_ + "/junk.model") << "not a model";
  expect_input_error([&] { open_tokenizer("spm:" + dir_ + "/junk.model"); }, "junk.model");
  expect_input_error([&] { open_tokenizer("gpt2"); }, "expected 'byte' or 'spm:MODEL_FILE'");
  expect_input_error([&] { prepare_data(trained(100)); }, "--vocab-size 100");
  expect_input_error([&] { prepare_data(trained(400, "wordpiece")); }, "--tokenizer-type");
  // A vocabulary the text cannot fill: SentencePiece's refusal, named.
  expect_input_error([&] { prepare_data(trained(60000)); }, "--vocab-size 60000");
  std::ofstream(dir_ + "/bad.yaml");
  fs::create_directories(dir_ + "/y");
  std::ofstream(dir_ + "/y/tokenizer.yaml") << "kind: [1, 2]\n";
  expect_input_error([&] { read_tokenizer_info(dir_ + "/y"); }, "tokenizer.yaml: key 'kind'");
}

TEST(PrepareShardVersion, WideVocabulariesUseLlmcsLlama3Layout) {
  EXPECT_EQ(prepare_shard_version(0, 256), 1);
  EXPECT_EQ(prepare_shard_version(0, 65536), 1);
  EXPECT_EQ(prepare_shard_version(0, 65537), kLlama3ShardVersion);
  EXPECT_EQ(prepare_shard_version(0, 128256), kLlama3ShardVersion);
  EXPECT_EQ(prepare_shard_version(7, 256), kLlama3ShardVersion);
  expect_input_error([] { prepare_shard_version(1, 128256); }, "--version 1 stores uint16");
}

}  // namespace
}  // namespace strata
