// The parsers tests/fuzz drives on bytes in memory are the ones the file readers use: the same
// answers on the same bytes, errors naming the source given.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "input_error_util.h"
#include "launch/checkpoint.h"
#include "launch/data.h"
#include "models/safetensors.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

class ParseInMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() /
        ("strata_parse_mem_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  fs::path dir_;
};

using test::expect_input_error;

TEST_F(ParseInMemoryTest, TokenShardBytesParseAsTheFileDoes) {
  const std::vector<int32_t> tokens = {5, 0, 255, 17};
  write_token_shard(path("t.bin"), tokens, 2);
  const std::string bytes = read(path("t.bin"));
  std::vector<uint32_t> aligned(bytes.size() / 4);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(aligned.data());
  const TokenShardHeader h = parse_token_shard(p, static_cast<int64_t>(bytes.size()), 256, "mem");
  const TokenShard file(path("t.bin"), 256);
  EXPECT_EQ(h.version, file.version());
  EXPECT_EQ(h.num_tokens, file.size());
  expect_input_error([&] { parse_token_shard(p, 100, 256, "mem.bin"); }, "mem.bin: truncated");
  expect_input_error([&] { parse_token_shard(p, static_cast<int64_t>(bytes.size()), 200, "m"); },
                     "value 255");
}

TEST_F(ParseInMemoryTest, SafetensorsBytesParseAsTheFileDoes) {
  const std::vector<float> a = {1.f, -2.f, 3.5f, 0.f, 7.f, 1e-3f};
  export_safetensors(path("m.safetensors"), {{"a", {2, 3}, a.data()}}, {{"k", "v"}},
                     SafetensorsDType::BF16);
  const std::string bytes = read(path("m.safetensors"));
  const SafetensorsFile mem = parse_safetensors(bytes, "mem");
  const SafetensorsFile file = load_safetensors(path("m.safetensors"));
  ASSERT_EQ(mem.tensors.size(), 1u);
  EXPECT_EQ(mem.tensors[0].data, file.tensors[0].data);
  EXPECT_EQ(mem.tensors[0].shape, file.tensors[0].shape);
  EXPECT_EQ(mem.metadata, file.metadata);
  expect_input_error([&] { parse_safetensors(bytes.substr(0, bytes.size() - 1), "cut.st"); },
                     "cut.st: invalid safetensors header: tensor 'a'");
  std::ofstream(path("empty.safetensors"));  // an empty file is refused, not an mmap error
  expect_input_error([&] { load_safetensors(path("empty.safetensors")); }, "shorter than");
}

TEST_F(ParseInMemoryTest, ManifestAndIndexTextParseAsTheFilesDo) {
  const std::array<float, 3> w = {1.f, 2.f, 3.f};
  write_shard(path("ck"), 4, 0, {{"w", {3}, 0, 3, w.data()}});
  commit_checkpoint(path("ck"), 4, 1, {{"k", "v"}}, "train:\n  steps: 4\n", 0);
  const std::string step_dir = path("ck/" + step_dir_name(4));
  const CheckpointReader mem =
      CheckpointReader::from_manifest_text(read(step_dir + "/manifest.yaml"), step_dir);
  const CheckpointReader file(step_dir);
  EXPECT_EQ(mem.step(), 4);
  EXPECT_EQ(mem.tensor_names(), file.tensor_names());
  EXPECT_EQ(mem.states(), file.states());
  EXPECT_EQ(mem.read("w"), file.read("w"));  // shards are read from step_dir

  const std::string index = read(step_dir + "/" + shard_index_name(0));
  check_shard_index(index, "idx.yaml", 4, 0);
  expect_input_error([&] { check_shard_index(index, "idx.yaml", 5, 0); }, "different step");
  expect_input_error([&] { check_shard_index(index, "idx.yaml", 4, 1); }, "written by rank 0");
  expect_input_error([&] { check_shard_index("[1, 2]", "idx.yaml", 4, 0); }, "idx.yaml: ");
}

}  // namespace
}  // namespace strata
