// The token file layouts beside Strata's own: llm.c's Llama-3 shards (magic 20240801, version 7,
// uint32) and Megatron-LM's indexed datasets (.bin + MMIDIDX .idx). The writers here follow the
// formats' documentation byte by byte (llm.c dev/data/data_common.py, Megatron's
// indexed_dataset.py); tests/e2e/token_formats.sh does the same from an independent Python writer.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "input_error_util.h"
#include "launch/data.h"
#include "launch/megatron_index.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using test::expect_input_error;

class TokenFormatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata_test_formats_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

std::string read_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

std::vector<int32_t> read_all(const TokenShard& s) {
  std::vector<int32_t> out(static_cast<size_t>(s.size()));
  s.copy(0, s.size(), out.data());
  return out;
}

// A Megatron dataset of `docs` (each one document of one sequence), tokens stored as T.
struct Megatron {
  std::vector<std::vector<int64_t>> docs;
  uint8_t code = 8;  // uint16
  std::string bin, idx;

  template <typename T>
  void build() {
    bin.clear();
    std::vector<int32_t> lengths;
    std::vector<int64_t> pointers, doc_index = {0};
    for (const auto& d : docs) {
      pointers.push_back(static_cast<int64_t>(bin.size()));
      lengths.push_back(static_cast<int32_t>(d.size()));
      for (int64_t t : d) put(bin, static_cast<T>(t));
      doc_index.push_back(static_cast<int64_t>(lengths.size()));
    }
    idx.assign(kMegatronIndexMagic, 9);
    put<uint64_t>(idx, 1);
    put<uint8_t>(idx, code);
    put<uint64_t>(idx, lengths.size());
    put<uint64_t>(idx, doc_index.size());
    for (int32_t l : lengths) put(idx, l);
    for (int64_t p : pointers) put(idx, p);
    for (int64_t d : doc_index) put(idx, d);
  }
  void write(const std::string& prefix) const {
    write_bytes(prefix + ".bin", bin);
    write_bytes(prefix + ".idx", idx);
  }
};

// ------------------------------------------------------------------------ llm.c Llama-3 layout

TEST_F(TokenFormatsTest, Llama3ShardIsWrittenAsLlmcWritesIt) {
  const std::vector<int32_t> tokens = {128000, 9906, 1917, 0, 65536, 128001};
  write_token_shard(path("l3.bin"), tokens, kLlama3ShardVersion);
  // llm.c's write_datafile for "llama-3": 256 int32 (magic, version, count, zeros), uint32 tokens.
  std::string want;
  std::array<int32_t, 256> header{};
  header[0] = 20240801;
  header[1] = 7;
  header[2] = static_cast<int32_t>(tokens.size());
  for (int32_t h : header) put(want, h);
  for (int32_t t : tokens) put(want, static_cast<uint32_t>(t));
  EXPECT_EQ(read_bytes(path("l3.bin")), want);

  const TokenShard shard(path("l3.bin"), 128256);
  EXPECT_EQ(shard.version(), 7);
  EXPECT_EQ(shard.type(), TokenType::u32);
  EXPECT_EQ(read_all(shard), tokens);
}

TEST_F(TokenFormatsTest, Version2IsStillReadAndMagicMustMatchVersion) {
  write_token_shard(path("v2.bin"), std::vector<int32_t>{70000, 1}, 2);
  EXPECT_EQ(read_all(TokenShard(path("v2.bin"), 70001)), (std::vector<int32_t>{70000, 1}));
  // Llama-3 magic with GPT-2's version, and GPT-2's magic with version 7: neither is llm.c's.
  std::string bytes = read_bytes(path("v2.bin"));
  int32_t v = 1, magic = 20240801;
  std::memcpy(bytes.data() + 4, &v, 4);
  std::memcpy(bytes.data(), &magic, 4);
  write_bytes(path("mix.bin"), bytes);
  expect_input_error([&] { TokenShard(path("mix.bin"), 256); }, "unsupported version 1 for magic");
  v = 7, magic = 20240520;
  std::memcpy(bytes.data() + 4, &v, 4);
  std::memcpy(bytes.data(), &magic, 4);
  write_bytes(path("mix.bin"), bytes);
  expect_input_error([&] { TokenShard(path("mix.bin"), 256); }, "version 7 for magic 20240520");
}

TEST_F(TokenFormatsTest, BadMagicNamesBothLlmcMagics) {
  write_bytes(path("junk.bin"), std::string(1024 + 8, 'x'));
  expect_input_error([&] { TokenShard(path("junk.bin"), 256); }, "expected 20240520 or 20240801");
}

// ------------------------------------------------------------------------------- Megatron

TEST_F(TokenFormatsTest, MegatronDatasetReadsAsOneStreamInDocumentOrder) {
  Megatron m;
  m.docs = {{1, 2, 3}, {}, {40, 50}, {60000, 7, 8, 9}};
  m.build<uint16_t>();
  m.write(path("corpus_text_document"));
  const TokenShard shard(path("corpus_text_document.bin"), 65536);
  EXPECT_TRUE(shard.megatron());
  EXPECT_EQ(shard.type(), TokenType::u16);
  EXPECT_EQ(read_all(shard), (std::vector<int32_t>{1, 2, 3, 40, 50, 60000, 7, 8, 9}));
  // Named by its prefix, its .idx or its .bin, and found in a directory.
  const std::vector<std::string> bin = {path("corpus_text_document.bin")};
  EXPECT_EQ(resolve_shards(path("corpus_text_document")), bin);
  EXPECT_EQ(resolve_shards(path("corpus_text_document.idx")), bin);
  EXPECT_EQ(resolve_shards(path("corpus_text_document.bin")), bin);
  EXPECT_EQ(resolve_shards(dir_), bin);
  const ShardSet set(path("corpus_text_document"), 4, 65536);
  EXPECT_EQ(set.num_tokens(), 9);
  EXPECT_EQ(set.num_windows(), 2);
  std::vector<int32_t> in(4), tg(4);
  set.read_window(1, in.data(), tg.data());
  EXPECT_EQ(in, (std::vector<int32_t>{50, 60000, 7, 8}));  // the window crosses documents
  EXPECT_EQ(tg, (std::vector<int32_t>{60000, 7, 8, 9}));
}

TEST_F(TokenFormatsTest, MegatronInt32AndInt64Tokens) {
  Megatron m;
  m.docs = {{100000, 0}, {5}};
  m.code = 4;
  m.build<int32_t>();
  m.write(path("i32"));
  EXPECT_EQ(read_all(TokenShard(path("i32.bin"), 100001)), (std::vector<int32_t>{100000, 0, 5}));
  m.code = 5;
  m.build<int64_t>();
  m.write(path("i64"));
  EXPECT_EQ(read_all(TokenShard(path("i64.bin"), 100001)), (std::vector<int32_t>{100000, 0, 5}));
  m.docs = {{3, -1}};
  m.code = 4;
  m.build<int32_t>();
  m.write(path("neg"));
  expect_input_error([&] { TokenShard(path("neg.bin"), 256); }, "index 1 has value -1");
}

TEST_F(TokenFormatsTest, MalformedIndexNamesFileAndField) {
  Megatron m;
  m.docs = {{1, 2}, {3}};
  m.build<uint16_t>();
  const std::string idx = path("d.idx"), bin = path("d.bin");
  auto expect_refused = [&](std::string index, const std::string& needle, std::string data = "") {
    m.write(path("d"));
    write_bytes(idx, index);
    if (!data.empty()) write_bytes(bin, data);
    expect_input_error([&] { TokenShard(bin, 256); }, needle);
    try {
      TokenShard(bin, 256);
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(path("d.")), std::string::npos) << e.what();
    }
  };
  std::string bad = m.idx;
  bad[0] = 'X';
  expect_refused(bad, "bad magic");
  bad = m.idx;
  bad[9] = 2;
  expect_refused(bad, "field version: 2, expected 1");
  bad = m.idx;
  bad[17] = 7;  // float32
  expect_refused(bad, "field dtype: code 7");
  expect_refused(m.idx.substr(0, m.idx.size() - 1), "truncated");
  expect_refused(m.idx + "x", "trailing data");
  bad = m.idx;
  bad[kMegatronIndexHeaderBytes + 4] = 9;  // sequence_lengths[1] = 9: the .bin is too short
  expect_refused(bad, "d.bin: truncated: the sequence_lengths of");
  bad = m.idx;
  bad[kMegatronIndexHeaderBytes] = 5;  // sequence_lengths[0] = 5: pointers[1] = 4 disagrees
  expect_refused(bad, "sequence_pointers[1]: 4, expected 10");
  bad = m.idx;
  bad[kMegatronIndexHeaderBytes + 8 + 16] = 1;  // document_indices[0] = 1
  expect_refused(bad, "document_indices[0]: 1, expected 0");
  bad = m.idx;
  bad[kMegatronIndexHeaderBytes + 8 + 16 + 16] = 1;  // document_indices[2] = 1, not 2
  expect_refused(bad, "document_indices[2]: 1, expected the sequence count 2");
  expect_refused(m.idx, "d.bin: truncated: the sequence_lengths", m.bin.substr(0, 4));
  expect_refused(m.idx, "trailing data", m.bin + "zz");
  bad = m.idx;
  bad[18 + 7] = 0x10;  // a sequence count of 2^60
  expect_refused(bad, "field sequence_count");
}

TEST_F(TokenFormatsTest, MissingBinOfAnIndexIsNamed) {
  Megatron m;
  m.docs = {{1}};
  m.build<uint16_t>();
  write_bytes(path("only.idx"), m.idx);
  expect_input_error([&] { ShardSet(path("only.idx"), 1, 256); }, path("only.bin"));
}

}  // namespace
}  // namespace strata
