#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/crc32c.h"
#include "core/error.h"
#include "launch/checkpoint.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// CRC-32C

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c_portable("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  const std::string zeros(32, '\0');  // RFC 3720 B.4 test vector
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Crc32c, HardwareMatchesTableAndChains) {
  std::vector<unsigned char> buf(1000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 131 + 7);
  for (size_t start : {0, 1, 3, 7}) {  // unaligned starts exercise the 8-byte loads
    for (size_t n : {0, 1, 7, 8, 9, 63, 64, 500, 993}) {
      const uint32_t full = crc32c(buf.data() + start, n);
      EXPECT_EQ(full, crc32c_portable(buf.data() + start, n)) << start << " " << n;
      const size_t half = n / 3;
      EXPECT_EQ(full,
                crc32c(buf.data() + start + half, n - half, crc32c(buf.data() + start, half)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = (fs::temp_directory_path() /
             ("strata_ckpt_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string step_dir(int64_t step) const { return root_ + "/" + step_dir_name(step); }
  std::string shard_path(int64_t step, int rank) const {
    return step_dir(step) + "/" + shard_file_name(rank);
  }

  // Writes `world` shards, rank r holding the r-th contiguous block of every tensor.
  void save(int64_t step, int world, int64_t keep_last = 0,
            const std::map<std::string, std::string>& state = {}) {
    for (int r = 0; r < world; ++r) write_shard(root_, step, r, blocks(r, world));
    commit_checkpoint(root_, step, world, state, "model: {dim: 4}\n", keep_last);
  }

  std::vector<TensorSlice> blocks(int rank, int world) const {
    std::vector<TensorSlice> out;
    for (const auto& [name, t] : tensors_) {
      const int64_t n = static_cast<int64_t>(t.data.size());
      const int64_t begin = n * rank / world, end = n * (rank + 1) / world;
      out.push_back({name, t.shape, begin, end - begin, t.data.data() + begin});
    }
    return out;
  }

  struct Full {
    std::vector<int64_t> shape;
    std::vector<float> data;
  };
  static Full make(std::vector<int64_t> shape, float seed) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Full f{std::move(shape), std::vector<float>(static_cast<size_t>(n))};
    for (size_t i = 0; i < f.data.size(); ++i) f.data[i] = std::sin(seed + 0.1f * i);
    return f;
  }

  std::string root_;
  // Odd sizes so that rank blocks and 64-byte alignment padding do not line up.
  std::map<std::string, Full> tensors_ = {
      {"blocks.0.flat", make({37}, 1.f)},
      {"embed.weight", make({5, 7}, 2.f)},
      {"adam.m", make({3, 2, 2}, 3.f)},
  };
};

void expect_input_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected InputError mentioning " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void flip_byte(const std::string& path, int64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(offset);
  f.write(&c, 1);
}

TEST_F(CheckpointTest, Names) {
  EXPECT_EQ(step_dir_name(10), "step_00000010");
  EXPECT_EQ(step_dir_name(123456789), "step_123456789");
  EXPECT_EQ(shard_file_name(3), "shard_r00003.bin");
  EXPECT_EQ(shard_index_name(3), "shard_r00003.index.yaml");
}

TEST_F(CheckpointTest, SingleRankRoundTrip) {
  save(10, 1);
  const CheckpointReader ck(step_dir(10));
  EXPECT_EQ(ck.step(), 10);
  EXPECT_EQ(ck.world(), 1);
  EXPECT_EQ(ck.config_yaml(), "model: {dim: 4}\n");
  EXPECT_EQ(ck.tensor_names(),
            (std::vector<std::string>{"adam.m", "blocks.0.flat", "embed.weight"}));
  for (const auto& [name, t] : tensors_) {
    EXPECT_TRUE(ck.has(name));
    EXPECT_EQ(ck.global_shape(name), t.shape);
    EXPECT_EQ(ck.read(name), t.data) << name;  // bit-exact
  }
  EXPECT_FALSE(ck.has("nope"));
  expect_input_error([&] { ck.global_shape("nope"); }, "nope");
}

TEST_F(CheckpointTest, FilesAreAlignedIndexedAndFinal) {
  save(10, 2);
  const YAML::Node index = YAML::LoadFile(step_dir(10) + "/" + shard_index_name(1));
  EXPECT_EQ(index["rank"].as<int>(), 1);
  EXPECT_EQ(index["size"].as<int64_t>(), static_cast<int64_t>(fs::file_size(shard_path(10, 1))));
  ASSERT_EQ(index["entries"].size(), tensors_.size());
  for (const YAML::Node& e : index["entries"]) {
    EXPECT_EQ(e["offset"].as<int64_t>() % 64, 0) << e["name"].as<std::string>();
    EXPECT_TRUE(e["crc32c"].IsScalar());
    EXPECT_TRUE(e["global_shape"].IsSequence());
  }
  const YAML::Node manifest = YAML::LoadFile(step_dir(10) + "/manifest.yaml");
  EXPECT_EQ(manifest["step"].as<int64_t>(), 10);
  EXPECT_EQ(manifest["world"].as<int>(), 2);
  EXPECT_EQ(manifest["shards"].size(), 2u);
  for (const auto& f : fs::recursive_directory_iterator(root_))
    EXPECT_EQ(f.path().string().find(".tmp"), std::string::npos) << f.path();
}

TEST_F(CheckpointTest, TwoRankCheckpointReadsAsWholeTensorsAndAnyRange) {
  save(20, 2);
  const CheckpointReader ck(root_);  // root -> latest
  EXPECT_EQ(ck.world(), 2);
  for (const auto& [name, t] : tensors_) EXPECT_EQ(ck.read(name), t.data) << name;
  // Every range of one tensor, across the rank boundary and the ends.
  const std::vector<float>& full = tensors_.at("blocks.0.flat").data;
  const int64_t n = static_cast<int64_t>(full.size());
  for (int64_t begin = 0; begin <= n; ++begin) {
    for (int64_t len = 0; begin + len <= n; len += 3) {
      std::vector<float> got(static_cast<size_t>(len), -1.f);
      ck.read("blocks.0.flat", begin, len, got.data());
      EXPECT_TRUE(std::equal(got.begin(), got.end(), full.begin() + begin)) << begin << "+" << len;
    }
  }
  std::vector<float> dst(4);
  expect_input_error([&] { ck.read("embed.weight", 33, 4, dst.data()); }, "outside");
}

TEST_F(CheckpointTest, ThreeRankCheckpointLoadsUnderTwoRanks) {
  save(30, 3);
  const CheckpointReader ck(step_dir(30));
  for (const auto& [name, t] : tensors_) {
    const int64_t n = static_cast<int64_t>(t.data.size());
    std::vector<float> got(t.data.size());
    for (int r = 0; r < 2; ++r) {  // what each of 2 new ranks asks for
      const int64_t begin = n * r / 2, end = n * (r + 1) / 2;
      ck.read(name, begin, end - begin, got.data() + begin);
    }
    EXPECT_EQ(got, t.data) << name;
  }
}

TEST_F(CheckpointTest, ReplicatedAndUncoveredSlices) {
  const Full& t = tensors_.at("blocks.0.flat");
  const TensorSlice whole{"w", t.shape, 0, 37, t.data.data()};
  const TensorSlice head{"h", t.shape, 0, 20, t.data.data()};
  write_shard(root_, 1, 0, {whole, head});
  write_shard(root_, 1, 1, {whole});  // a data-parallel replica holding the same elements
  commit_checkpoint(root_, 1, 2, {}, "", 0);
  const CheckpointReader ck(root_);
  EXPECT_EQ(ck.read("w"), t.data);
  std::vector<float> got(20);
  ck.read("h", 0, 20, got.data());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), t.data.begin()));
  expect_input_error([&] { ck.read("h", 10, 15, got.data()); }, "element 20 is in no shard");
}

TEST_F(CheckpointTest, StateAndConfigRoundTrip) {
  const std::map<std::string, std::string> state = {
      {"data.position", "12345"},
      {"rng", "key=[1, 2] position=99"},
      {"optimizer.step", "20"},
      {"empty", ""},
      {"yaml-ish", "yes"},
      {"null-ish", "~"},
      {"spaces", "  lead and trail  "},
      {"multi", "line1\nline2: x\n\t- item\n"},
      {"quotes", "\"q\" 'single' \\ # not a comment"},
      {"unicode", "h\xC3\xA9llo"},
  };
  const std::string config =
      "# resolved job\nmodel:\n  dim: 64   \n  name: \"tiny\"\ntrain:\n\tsteps: 10\n\n";
  write_shard(root_, 5, 0, blocks(0, 1));
  commit_checkpoint(root_, 5, 1, state, config, 0);
  const CheckpointReader ck(root_);
  EXPECT_EQ(ck.config_yaml(), config);
  EXPECT_EQ(ck.states(), state);
  EXPECT_EQ(ck.state("optimizer.step"), "20");
  EXPECT_TRUE(ck.has_state("empty"));
  EXPECT_FALSE(ck.has_state("absent"));
  expect_input_error([&] { ck.state("absent"); }, "manifest.yaml");
}

TEST_F(CheckpointTest, LatestPointsAtNewestAndKeepLastPrunes) {
  save(10, 1, 2);
  save(20, 1, 2);
  EXPECT_EQ(find_latest(root_), step_dir(20));
  save(30, 1, 2);
  EXPECT_EQ(find_latest(root_), step_dir(30));
  EXPECT_FALSE(fs::exists(step_dir(10)));
  EXPECT_TRUE(fs::exists(step_dir(20)));
  EXPECT_EQ(CheckpointReader(root_).step(), 30);
  save(40, 1, 0);  // keep all
  EXPECT_TRUE(fs::exists(step_dir(20)));
  EXPECT_TRUE(fs::exists(step_dir(30)));
  save(50, 1, 1);  // keep only the new one
  EXPECT_FALSE(fs::exists(step_dir(40)));
  EXPECT_TRUE(fs::exists(step_dir(50)));
  EXPECT_EQ(find_latest(root_), step_dir(50));
  std::ifstream latest(root_ + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_00000050");
}

TEST_F(CheckpointTest, AbortedSaveIsIgnoredAndLaterPruned) {
  save(10, 2);
  // Step 20: rank 0 finished, rank 1 was killed mid-save; rank 0 never committed.
  write_shard(root_, 20, 0, blocks(0, 2));
  EXPECT_EQ(find_latest(root_), step_dir(10));
  EXPECT_EQ(CheckpointReader(root_).step(), 10);
  expect_input_error([&] { CheckpointReader{step_dir(20)}; }, "manifest.yaml");
  // Committing with rank 1's index missing names the missing file.
  expect_input_error([&] { commit_checkpoint(root_, 20, 2, {}, "", 0); }, shard_index_name(1));
  EXPECT_EQ(find_latest(root_), step_dir(10));
  save(30, 2);
  EXPECT_FALSE(fs::exists(step_dir(20)));  // stale incomplete directory removed
  EXPECT_TRUE(fs::exists(step_dir(10)));
}

TEST_F(CheckpointTest, LatestFallsBackToNewestCommitted) {
  EXPECT_EQ(find_latest(root_), std::nullopt);
  save(10, 1);
  save(20, 1);
  fs::remove(root_ + "/latest");
  EXPECT_EQ(find_latest(root_), step_dir(20));
  expect_input_error([&] { CheckpointReader{root_ + "/nowhere"}; }, "nowhere");
}

TEST_F(CheckpointTest, RewritingCommittedStepReplacesIt) {
  save(10, 1);
  save(20, 1);
  EXPECT_TRUE(is_committed(root_, 20));
  EXPECT_FALSE(is_committed(root_, 21));
  // A run restarted from scratch saves step 20 again, with different values.
  for (auto& [name, t] : tensors_)
    for (float& x : t.data) x += 1.f;
  write_shard(root_, 20, 0, blocks(0, 1));
  EXPECT_FALSE(is_committed(root_, 20));        // uncommitted while being rewritten,
  EXPECT_EQ(find_latest(root_), step_dir(10));  // so a crash now resumes from step 10
  commit_checkpoint(root_, 20, 1, {}, "", 0);
  EXPECT_EQ(CheckpointReader(root_).read("adam.m"), tensors_.at("adam.m").data);
}

TEST_F(CheckpointTest, SavingWithFewerRanksRemovesStrayShards) {
  write_shard(root_, 10, 2, blocks(2, 3));  // left over from an aborted 3-rank save
  save(10, 2);
  EXPECT_FALSE(fs::exists(shard_path(10, 2)));
  EXPECT_EQ(CheckpointReader(root_).world(), 2);
}

TEST_F(CheckpointTest, FlippedByteIsRefusedNamingTheShard) {
  save(10, 2);
  const YAML::Node index = YAML::LoadFile(step_dir(10) + "/" + shard_index_name(1));
  flip_byte(shard_path(10, 1), index["entries"][1]["offset"].as<int64_t>() + 5);
  const CheckpointReader ck(root_);
  // Rank 0's half is still readable: each file is verified when first used.
  std::vector<float> half(18);
  ck.read("blocks.0.flat", 0, 18, half.data());
  expect_input_error([&] { ck.read("blocks.0.flat"); }, shard_file_name(1));
  expect_input_error([&] { ck.read("blocks.0.flat"); }, "checksum mismatch");
}

TEST_F(CheckpointTest, FlippedPaddingByteFailsTheFileChecksum) {
  save(10, 1);
  const YAML::Node index = YAML::LoadFile(step_dir(10) + "/" + shard_index_name(0));
  flip_byte(shard_path(10, 0), index["entries"][1]["offset"].as<int64_t>() - 1);  // padding
  expect_input_error([&] { CheckpointReader(root_).read("adam.m"); }, shard_file_name(0));
}

TEST_F(CheckpointTest, TruncatedShardIsRefusedNamingTheShard) {
  save(10, 2);
  fs::resize_file(shard_path(10, 0), fs::file_size(shard_path(10, 0)) - 4);
  const CheckpointReader ck(root_);
  expect_input_error([&] { ck.read("embed.weight"); }, shard_file_name(0));
  expect_input_error([&] { ck.read("embed.weight"); }, "truncated");
}

TEST_F(CheckpointTest, DeletedShardIsRefusedNamingTheShard) {
  save(10, 2);
  fs::remove(shard_path(10, 1));
  const CheckpointReader ck(root_);
  expect_input_error([&] { ck.read("adam.m"); }, shard_path(10, 1));
}

TEST_F(CheckpointTest, MissingOrCorruptManifestIsRefused) {
  save(10, 1);
  const std::string manifest = step_dir(10) + "/manifest.yaml";
  std::ofstream(manifest) << "format: strata-checkpoint-v1\nstep: [unclosed\n";
  expect_input_error([&] { CheckpointReader{step_dir(10)}; }, manifest);
  std::ofstream(manifest) << "format: strata-checkpoint-v1\nstep: 10\nworld: 1\n";
  expect_input_error([&] { CheckpointReader{step_dir(10)}; }, "missing key 'state'");
  fs::remove(manifest);
  expect_input_error([&] { CheckpointReader{step_dir(10)}; }, manifest);
}

}  // namespace
}  // namespace strata
