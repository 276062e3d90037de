// Token shards, data-spec resolution, prepare-data and the training / evaluation loaders.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "launch/data.h"
#include "launch/prepare_data.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/strata_test_data_XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    EXPECT_NE(made, nullptr);
    path_ = made ? made : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    if (path_ != "/tmp") fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

void write_text(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs fn, expects an InputError, and checks that its message holds every fragment.
void expect_input_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << msg << "\n  lacks: " << p;
  }
}

// Writes a header like llm.c's write_datafile: 256 int32 words, then the raw token words.
template <typename T>
void write_raw_shard(const std::string& path, int32_t magic, int32_t version, int32_t count,
                     const std::vector<T>& tokens) {
  std::array<int32_t, 256> header{};
  header[0] = magic;
  header[1] = version;
  header[2] = count;
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(header.data(), sizeof(int32_t), header.size(), f);
  std::fwrite(tokens.data(), sizeof(T), tokens.size(), f);
  std::fclose(f);
}

std::vector<int32_t> read_all(const TokenShard& shard) {
  std::vector<int32_t> out(static_cast<size_t>(shard.size()));
  shard.copy(0, shard.size(), out.data());
  return out;
}

std::vector<int32_t> iota_tokens(int64_t n, int32_t first = 0) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// ------------------------------------------------------------------------------------ shards

TEST(TokenShard, RoundTripVersion1) {
  TempDir dir;
  const std::vector<int32_t> tokens = {0, 1, 255, 256, 65535, 7, 42};
  write_token_shard(dir / "a.bin", tokens, 1);
  EXPECT_EQ(fs::file_size(dir / "a.bin"), 1024u + 2u * tokens.size());
  EXPECT_FALSE(fs::exists(dir / "a.bin.tmp"));
  const TokenShard shard(dir / "a.bin", 65536);
  EXPECT_EQ(shard.version(), 1);
  EXPECT_EQ(shard.size(), 7);
  EXPECT_EQ(read_all(shard), tokens);
  EXPECT_EQ(shard.at(4), 65535);
}

TEST(TokenShard, RoundTripVersion2) {
  TempDir dir;
  const std::vector<int32_t> tokens = {0, 65536, 100000, 2147483647, 3};
  write_token_shard(dir / "b.bin", tokens, 2);
  EXPECT_EQ(fs::file_size(dir / "b.bin"), 1024u + 4u * tokens.size());
  const TokenShard shard(dir / "b.bin", int64_t{1} << 31);
  EXPECT_EQ(shard.version(), 2);
  EXPECT_EQ(read_all(shard), tokens);
}

TEST(TokenShard, EmptyShardRoundTrips) {
  TempDir dir;
  write_token_shard(dir / "e.bin", {}, 1);
  EXPECT_EQ(TokenShard(dir / "e.bin", 256).size(), 0);
}

TEST(TokenShard, ReadsShardWrittenLikeLlmc) {
  TempDir dir;
  const std::vector<uint16_t> tokens = {50256, 15496, 11, 995, 0, 50256};
  write_raw_shard<uint16_t>(dir / "llmc.bin", 20240520, 1, 6, tokens);
  const TokenShard shard(dir / "llmc.bin", 50257);
  EXPECT_EQ(read_all(shard), std::vector<int32_t>(tokens.begin(), tokens.end()));
  // And our writer produces the same bytes llm.c does.
  write_token_shard(dir / "ours.bin", read_all(shard), 1);
  EXPECT_EQ(read_bytes(dir / "ours.bin"), read_bytes(dir / "llmc.bin"));
}

TEST(TokenShard, TruncatedFileNamesFileAndSizes) {
  TempDir dir;
  const std::string path = dir / "trunc.bin";
  write_raw_shard<uint16_t>(path, 20240520, 1, 1000, std::vector<uint16_t>(488, 1));
  expect_input_error([&] { TokenShard(path, 256); },
                     {path, "truncated", "1000 tokens", "3024 bytes", "2000 bytes"});
  write_text(dir / "tiny.bin", "abc");
  expect_input_error([&] { TokenShard(dir / "tiny.bin", 256); }, {dir / "tiny.bin", "header"});
}

TEST(TokenShard, TrailingDataIsRejected) {
  TempDir dir;
  write_raw_shard<uint16_t>(dir / "long.bin", 20240520, 1, 2, std::vector<uint16_t>(3, 1));
  expect_input_error([&] { TokenShard(dir / "long.bin", 256); }, {dir / "long.bin", "2 tokens"});
}

TEST(TokenShard, BadMagicAndVersion) {
  TempDir dir;
  write_raw_shard<uint16_t>(dir / "magic.bin", 12345, 1, 2, std::vector<uint16_t>(2, 1));
  expect_input_error([&] { TokenShard(dir / "magic.bin", 256); },
                     {dir / "magic.bin", "magic 12345", "20240520"});
  write_raw_shard<uint16_t>(dir / "ver.bin", 20240520, 3, 2, std::vector<uint16_t>(2, 1));
  expect_input_error([&] { TokenShard(dir / "ver.bin", 256); }, {dir / "ver.bin", "version 3"});
}

TEST(TokenShard, TokenOutsideVocabNamesIndexAndValue) {
  TempDir dir;
  write_token_shard(dir / "v.bin", std::vector<int32_t>{1, 2, 3, 300, 4}, 1);
  expect_input_error([&] { TokenShard(dir / "v.bin", 256); },
                     {dir / "v.bin", "index 3", "300", "vocab_size 256"});
  write_token_shard(dir / "v2.bin", std::vector<int32_t>{1, 70000}, 2);
  expect_input_error([&] { TokenShard(dir / "v2.bin", 65536); },
                     {dir / "v2.bin", "index 1", "70000"});
  EXPECT_NO_THROW(TokenShard(dir / "v.bin", 301));
}

TEST(TokenShard, WriterRejectsTokensTheVersionCannotHold) {
  TempDir dir;
  expect_input_error(
      [&] {
        write_token_shard(dir / "w.bin", std::vector<int32_t>{1, 70000}, 1);
      },
      {dir / "w.bin", "index 1", "70000"});
  expect_input_error([&] { write_token_shard(dir / "w.bin", std::vector<int32_t>{-1}, 2); },
                     {"index 0", "-1"});
  expect_input_error([&] { write_token_shard(dir / "w.bin", std::vector<int32_t>{1}, 5); },
                     {"version 5"});
  EXPECT_FALSE(fs::exists(dir / "w.bin"));
  EXPECT_FALSE(fs::exists(dir / "w.bin.tmp"));
  expect_input_error(
      [&] { write_token_shard(dir / "no/such/dir/x.bin", std::vector<int32_t>{1}, 1); },
      {"no/such/dir/x.bin"});
}

// --------------------------------------------------------------------------- spec resolution

TEST(ResolveShards, FileDirectoryPrefixGlobAndNothing) {
  TempDir dir;
  fs::create_directories(dir / "d");
  for (const char* name : {"train_000001.bin", "train_000000.bin", "val_000000.bin"})
    write_token_shard(dir / (std::string("d/") + name), std::vector<int32_t>{1, 2}, 1);
  write_text(dir / "d/notes.txt", "not a shard");

  EXPECT_EQ(resolve_shards(dir / "d/val_000000.bin"),
            std::vector<std::string>{dir / "d/val_000000.bin"});
  const std::vector<std::string> train = {dir / "d/train_000000.bin", dir / "d/train_000001.bin"};
  EXPECT_EQ(resolve_shards(dir / "d"),
            (std::vector<std::string>{train[0], train[1], dir / "d/val_000000.bin"}));
  EXPECT_EQ(resolve_shards(dir / "d/train"), train);
  EXPECT_EQ(resolve_shards(dir / "d/tr*n_*.bin"), train);

  expect_input_error([&] { resolve_shards(dir / "d/test"); },
                     {dir / "d/test", dir / "d/test_*.bin"});
  expect_input_error([&] { resolve_shards(dir / "d/*.xyz"); }, {dir / "d/*.xyz", "glob"});
  fs::create_directories(dir / "empty");
  expect_input_error([&] { resolve_shards(dir / "empty"); }, {dir / "empty", "*.bin"});
}

// ----------------------------------------------------------------------------- prepare-data

// The split rule restated: the first size - floor(size * val_fraction) bytes go to train.
size_t train_bytes(size_t size, double val_fraction) {
  return size - static_cast<size_t>(static_cast<double>(size) * val_fraction);
}

std::string shard_text(const std::vector<std::string>& paths) {
  std::string text;
  for (const auto& p : paths) text += decode_tokens(read_all(TokenShard(p, kByteVocabSize)));
  return text;
}

TEST(PrepareData, SmallCorpusSplitsEveryDocumentAndSkipsNonText) {
  TempDir dir;
  const std::string a(100, 'a'), b = std::string(40, 'b') + "\n", c(200, 'c');
  write_text(dir / "in/a.txt", a);
  write_text(dir / "in/sub/c.txt", c);
  write_text(dir / "in/b.txt", b);
  write_text(dir / "in/empty.txt", "");
  write_text(dir / "in/a.dat", "index");
  write_text(dir / "in/image.png", std::string("\x89PNG\0\0\0", 7) + "data");
  fs::create_symlink("a.txt", dir / "in/a.u8");

  PrepareDataOptions opt;
  opt.inputs = {dir / "in"};
  opt.output_dir = dir / "out";
  opt.val_fraction = 0.1;
  const auto summary = prepare_data(opt);

  EXPECT_EQ(summary.files, 3);
  EXPECT_EQ(summary.skipped_files, 4);  // empty, .dat, binary, symlink
  EXPECT_EQ(summary.documents,
            (std::vector<std::string>{dir / "in/a.txt", dir / "in/b.txt", dir / "in/sub/c.txt"}));
  const std::string want_train = std::string(1, '\0') + a.substr(0, train_bytes(100, 0.1)) + '\0' +
                                 b.substr(0, train_bytes(41, 0.1)) + '\0' +
                                 c.substr(0, train_bytes(200, 0.1));
  const std::string want_val = std::string(1, '\0') + a.substr(train_bytes(100, 0.1)) + '\0' +
                               b.substr(train_bytes(41, 0.1)) + '\0' +
                               c.substr(train_bytes(200, 0.1));
  EXPECT_EQ(summary.train_shards, std::vector<std::string>{dir / "out/train_000000.bin"});
  EXPECT_EQ(summary.val_shards, std::vector<std::string>{dir / "out/val_000000.bin"});
  EXPECT_EQ(shard_text(summary.train_shards), want_train);
  EXPECT_EQ(shard_text(summary.val_shards), want_val);
  EXPECT_EQ(summary.train_tokens, static_cast<int64_t>(want_train.size()));
  EXPECT_EQ(summary.val_tokens, static_cast<int64_t>(want_val.size()));
  // Every document's text appears in both splits.
  for (char ch : {'a', 'b', 'c'}) {
    EXPECT_NE(want_train.find(ch), std::string::npos);
    EXPECT_NE(want_val.find(ch), std::string::npos);
  }
}

TEST(PrepareData, ShardsAreCutAtShardTokensAndStaleOnesRemoved) {
  TempDir dir;
  write_text(dir / "one.txt", std::string(250, 'x'));
  PrepareDataOptions opt;
  opt.inputs = {dir / "one.txt"};
  opt.output_dir = dir / "out";
  opt.val_fraction = 0.0;
  opt.shard_tokens = 100;
  opt.version = kLlama3ShardVersion;
  auto summary = prepare_data(opt);
  ASSERT_EQ(summary.train_shards.size(), 3u);  // 251 tokens with the separator
  EXPECT_EQ(TokenShard(summary.train_shards[0], 256).size(), 100);
  EXPECT_EQ(TokenShard(summary.train_shards[2], 256).version(), kLlama3ShardVersion);
  EXPECT_EQ(summary.val_tokens, 0);
  EXPECT_TRUE(summary.val_shards.empty());
  EXPECT_EQ(shard_text(summary.train_shards), std::string(1, '\0') + std::string(250, 'x'));

  opt.shard_tokens = 1000;  // a re-run with fewer shards must not leave train_000001.bin behind
  summary = prepare_data(opt);
  EXPECT_EQ(summary.train_shards.size(), 1u);
  EXPECT_EQ(summary.removed_stale_shards, 2);
  EXPECT_EQ(resolve_shards(dir / "out/train").size(), 1u);
}

TEST(PrepareData, Errors) {
  TempDir dir;
  write_text(dir / "t.txt", "hello");
  PrepareDataOptions opt;
  opt.output_dir = dir / "out";
  expect_input_error([&] { prepare_data(opt); }, {"no inputs"});
  opt.inputs = {dir / "missing.txt"};
  expect_input_error([&] { prepare_data(opt); }, {dir / "missing.txt", "does not exist"});
  opt.inputs = {dir / "t.txt"};
  opt.output_dir = dir / "t.txt/out";  // under a regular file: cannot be created
  expect_input_error([&] { prepare_data(opt); }, {dir / "t.txt/out"});
  opt.output_dir = dir / "out";
  opt.val_fraction = 1.0;
  expect_input_error([&] { prepare_data(opt); }, {"val_fraction"});
  opt.val_fraction = 0.05;
  write_text(dir / "bin/x", std::string("\0\1", 2));
  opt.inputs = {dir / "bin"};
  expect_input_error([&] { prepare_data(opt); }, {"no text files"});
}

TEST(PrepareData, ByteTokenizerRoundTrips) {
  std::string all(256, '\0');
  for (int i = 0; i < 256; ++i) all[static_cast<size_t>(i)] = static_cast<char>(i);
  const auto tokens = encode_bytes(all);
  EXPECT_EQ(tokens[255], 255);
  EXPECT_EQ(decode_tokens(tokens), all);
  EXPECT_EQ(decode_tokens(std::vector<int32_t>{104, 300, 105}), "h?i");
}

// The real corpus when the `fortunes` package is installed: a sanity check of the split.
TEST(PrepareData, FortunesCorpus) {
  const std::string corpus = "/usr/share/games/fortunes";
  if (!fs::is_directory(corpus)) GTEST_SKIP() << corpus << " not installed";
  TempDir dir;
  PrepareDataOptions opt;
  opt.inputs = {corpus};
  opt.output_dir = dir / "fortunes";
  const auto summary = prepare_data(opt);
  EXPECT_GT(summary.files, 10);
  for (const auto& doc : summary.documents) {
    EXPECT_NE(fs::path(doc).extension(), ".dat") << doc;
    EXPECT_NE(fs::path(doc).extension(), ".u8") << doc;
  }
  const double total = static_cast<double>(summary.train_tokens + summary.val_tokens);
  EXPECT_GT(total, 1e6);
  EXPECT_NEAR(summary.val_tokens / total, 0.05, 0.005);
  DataLoader train(dir / "fortunes/train", 256, kByteVocabSize, 1);
  EXPECT_EQ(train.num_tokens(), summary.train_tokens);
}

// --------------------------------------------------------------------------------- loaders

// Two shards whose tokens are their global positions, so a window names its own start.
// Shard sizes 23 and 18 with seq_len 4 give (23-1)/4 + (18-1)/4 = 5 + 4 = 9 windows.
struct LoaderData {
  TempDir dir;
  std::string spec;
  std::vector<int32_t> starts;  // first input token of every window
  LoaderData() {
    fs::create_directories(dir / "d");
    write_token_shard(dir / "d/s_000000.bin", iota_tokens(23, 0), 2);
    write_token_shard(dir / "d/s_000001.bin", iota_tokens(18, 1000), 2);
    spec = dir / "d/s";
    for (int w = 0; w < 5; ++w) starts.push_back(4 * w);
    for (int w = 0; w < 4; ++w) starts.push_back(1000 + 4 * w);
  }
};

constexpr int64_t kSeq = 4;
constexpr int64_t kVocab = 2000;

// Draws n windows and returns their first input tokens, checking every window on the way.
std::vector<int32_t> draw(DataLoader& loader, int64_t n) {
  std::vector<int32_t> in(static_cast<size_t>(n * kSeq)), tg(in.size());
  loader.next_batch(n, in.data(), tg.data());
  std::vector<int32_t> firsts;
  for (int64_t s = 0; s < n; ++s) {
    const int32_t* x = &in[static_cast<size_t>(s * kSeq)];
    const int32_t* y = &tg[static_cast<size_t>(s * kSeq)];
    for (int64_t t = 0; t < kSeq; ++t) {
      EXPECT_EQ(x[t], x[0] + t);  // consecutive tokens of one shard
      EXPECT_EQ(y[t], x[t] + 1);  // targets are the next tokens
    }
    firsts.push_back(x[0]);
  }
  return firsts;
}

TEST(DataLoader, EachEpochVisitsEveryWindowOnce) {
  LoaderData data;
  DataLoader loader(data.spec, kSeq, kVocab, 7);
  EXPECT_EQ(loader.num_windows(), 9);
  EXPECT_EQ(loader.num_tokens(), 41);
  std::vector<int32_t> epoch0 = draw(loader, 9);
  EXPECT_EQ(loader.state(), (LoaderState{0, 9}));
  std::vector<int32_t> epoch1 = draw(loader, 9);
  EXPECT_EQ(loader.state(), (LoaderState{1, 9}));
  EXPECT_NE(epoch0, epoch1);  // a new permutation each epoch
  for (auto* e : {&epoch0, &epoch1}) {
    std::sort(e->begin(), e->end());
    EXPECT_EQ(*e, data.starts);
  }
}

TEST(DataLoader, SameSeedSameOrderOtherSeedOtherOrder) {
  LoaderData data;
  DataLoader a(data.spec, kSeq, kVocab, 7), b(data.spec, kSeq, kVocab, 7);
  DataLoader c(data.spec, kSeq, kVocab, 8);
  const auto from_a = draw(a, 30), from_b = draw(b, 30), from_c = draw(c, 30);
  EXPECT_EQ(from_a, from_b);
  EXPECT_NE(from_a, from_c);
}

TEST(DataLoader, RestoredStateContinuesIdentically) {
  LoaderData data;
  DataLoader a(data.spec, kSeq, kVocab, 3);
  draw(a, 13);  // into the second epoch
  const LoaderState saved = a.state();
  EXPECT_EQ(saved, (LoaderState{1, 4}));
  const auto expected = draw(a, 20);

  DataLoader b(data.spec, kSeq, kVocab, 3);
  draw(b, 2);  // wherever it is, restore wins
  b.restore(saved);
  EXPECT_EQ(draw(b, 20), expected);

  a.restore(saved);  // and a loader can rewind itself
  EXPECT_EQ(draw(a, 20), expected);

  expect_input_error([&] { b.restore({0, 10}); }, {data.spec, "9 windows"});
}

TEST(DataLoader, TooLittleDataNamesSpecAndSizes) {
  TempDir dir;
  write_token_shard(dir / "small.bin", iota_tokens(4), 1);
  expect_input_error([&] { DataLoader(dir / "small.bin", 4, 256, 1); },
                     {dir / "small.bin", "seq_len+1 = 5", "4 tokens"});
  expect_input_error([&] { DataLoader(dir / "nothing", 4, 256, 1); }, {dir / "nothing"});
}

TEST(EvalLoader, SequentialWrapsAndResets) {
  LoaderData data;
  EvalLoader eval(data.spec, kSeq, kVocab);
  EXPECT_EQ(eval.num_windows(), 9);
  std::vector<int32_t> in(12 * kSeq), tg(12 * kSeq);
  eval.next_batch(12, in.data(), tg.data());
  for (size_t s = 0; s < 12; ++s) {
    EXPECT_EQ(in[s * kSeq], data.starts[s % 9]);
    EXPECT_EQ(tg[s * kSeq + kSeq - 1], data.starts[s % 9] + kSeq);
  }
  eval.reset();
  std::vector<int32_t> again(2 * kSeq), again_t(2 * kSeq);
  eval.next_batch(2, again.data(), again_t.data());
  EXPECT_EQ(std::vector<int32_t>(in.begin(), in.begin() + 2 * kSeq), again);
}

}  // namespace
}  // namespace strata
