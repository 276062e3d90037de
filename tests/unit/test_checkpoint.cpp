#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <limits>

#include "core/crc32c.h"
#include "core/error.h"
#include "core/stop.h"
#include "input_error_util.h"
#include "launch/checkpoint.h"
#include "launch/checkpoint_files.h"
#include "launch/train_checkpoint.h"

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

using test::expect_input_error;

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

// ---------------------------------------------------------------------------------------------
// Not regular files, symbolic links, crash-safe pruning, tampered manifests, stop signals

// Runs fn, which must throw an InputError mentioning every needle, within a few seconds. If it
// blocks (opening a FIFO without a writer waits forever), the test fails and the FIFO is opened
// for writing once to let it go, so that a regression fails instead of hanging the suite.
void expect_refused_without_blocking(const std::function<void()>& fn,
                                     const std::vector<std::string>& needles,
                                     const std::string& fifo = "") {
  auto result = std::async(std::launch::async, [&]() -> std::string {
    try {
      fn();
    } catch (const InputError& e) {
      return e.what();
    }
    return "(no InputError)";
  });
  if (result.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "blocked (in open() of a FIFO?)";
    while (!fifo.empty() &&
           result.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    }
  }
  const std::string what = result.get();
  for (const std::string& n : needles)
    EXPECT_NE(what.find(n), std::string::npos) << "'" << n << "' not in: " << what;
}

void replace_with_fifo(const std::string& path) {
  fs::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0) << path;
}

TEST_F(CheckpointTest, FifoOrDirectoryInPlaceOfAFileIsRefusedWithoutBlocking) {
  save(10, 2);
  const std::string shard = shard_path(10, 1), manifest = step_dir(10) + "/manifest.yaml";
  fs::copy(step_dir(10), root_ + "/pristine", fs::copy_options::recursive);
  auto restore = [&] {
    fs::remove_all(step_dir(10));
    fs::copy(root_ + "/pristine", step_dir(10), fs::copy_options::recursive);
  };
  replace_with_fifo(shard);
  expect_refused_without_blocking([&] { CheckpointReader(root_).read("adam.m"); },
                                  {shard, "a FIFO", "not a regular file"}, shard);
  restore();
  fs::remove(shard);
  fs::create_directory(shard);
  expect_refused_without_blocking([&] { CheckpointReader(root_).read("adam.m"); },
                                  {shard, "a directory", "not a regular file"});
  restore();
  replace_with_fifo(manifest);
  expect_refused_without_blocking([&] { CheckpointReader{step_dir(10)}; }, {manifest, "a FIFO"},
                                  manifest);
  expect_refused_without_blocking([&] { CheckpointReader{root_}; }, {manifest, "a FIFO"}, manifest);
  restore();
  replace_with_fifo(root_ + "/latest");
  expect_refused_without_blocking([&] { find_latest(root_); }, {root_ + "/latest", "a FIFO"},
                                  root_ + "/latest");
  fs::remove(root_ + "/latest");
  // A rank's index as a FIFO when rank 0 commits.
  for (int r = 0; r < 2; ++r) write_shard(root_, 20, r, blocks(r, 2));
  const std::string index = step_dir(20) + "/" + shard_index_name(1);
  replace_with_fifo(index);
  expect_refused_without_blocking([&] { commit_checkpoint(root_, 20, 2, {}, "", 0); },
                                  {index, "a FIFO"}, index);
  EXPECT_FALSE(is_committed(root_, 20));
}

TEST_F(CheckpointTest, SavingOverAFifoOrLinkAtATempNameNeitherBlocksNorFollowsIt) {
  fs::create_directories(step_dir(10));
  const std::string tmp = shard_path(10, 0) + ".tmp", outside = root_ + "_victim";
  ASSERT_EQ(::mkfifo(tmp.c_str(), 0644), 0);
  fs::remove(outside);
  std::ofstream(outside) << "keep me";
  fs::create_symlink(outside, step_dir(10) + "/manifest.yaml.tmp");
  auto saved = std::async(std::launch::async, [&] { save(10, 1); });
  if (saved.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "the save blocked opening the FIFO";
    const int fd = ::open(tmp.c_str(), O_RDONLY | O_NONBLOCK);  // let it go
    saved.wait();
    if (fd >= 0) ::close(fd);
  }
  saved.get();
  EXPECT_EQ(CheckpointReader(root_).read("adam.m"), tensors_.at("adam.m").data);
  std::string victim;
  std::ifstream(outside) >> victim;
  EXPECT_EQ(victim, "keep");
  fs::remove(outside);
}

TEST_F(CheckpointTest, SymbolicLinksInsideTheCheckpointAreRefusedNamingThem) {
  save(10, 1);
  const std::string outside = root_ + "_outside";
  fs::remove_all(outside);
  fs::copy(step_dir(10), outside, fs::copy_options::recursive);  // intact: it would load
  auto relink = [&](const std::string& link, const std::string& target) {
    fs::remove_all(link);
    fs::create_symlink(target, link);
  };
  const std::string shard = shard_path(10, 0), manifest = step_dir(10) + "/manifest.yaml";
  relink(shard, outside + "/" + shard_file_name(0));
  expect_input_error([&] { CheckpointReader(root_).read("adam.m"); },
                     shard + ": is a symbolic link");
  relink(manifest, outside + "/manifest.yaml");
  expect_input_error([&] { CheckpointReader{step_dir(10)}; }, manifest + ": is a symbolic link");
  expect_input_error([&] { CheckpointReader{root_}; }, manifest + ": is a symbolic link");
  relink(step_dir(10), outside);  // the step directory itself, named by `latest`
  expect_input_error([&] { CheckpointReader{root_}; }, step_dir(10) + ": is a symbolic link");
  expect_input_error([&] { CheckpointReader{step_dir(10)}; },
                     step_dir(10) + ": is a symbolic link");
  expect_input_error([&] { CheckpointReader{step_dir(10) + "/"}; }, "symbolic link");
  fs::remove(root_ + "/latest");  // found by the directory scan instead
  expect_input_error([&] { find_latest(root_); }, step_dir(10) + ": is a symbolic link");
  // A save must not write through it either.
  expect_input_error([&] { write_shard(root_, 10, 0, blocks(0, 1)); }, "symbolic link");
  EXPECT_TRUE(fs::exists(outside + "/manifest.yaml"));  // not uncommitted through the link
  fs::remove(step_dir(10));
  save(20, 1);
  relink(root_ + "/latest", outside + "/../latest_elsewhere");
  expect_input_error([&] { find_latest(root_); }, root_ + "/latest: is a symbolic link");
  fs::remove(root_ + "/latest");
  fs::remove_all(outside);
}

TEST_F(CheckpointTest, TheRootItselfMayBeASymbolicLink) {
  const std::string real = root_ + "_real", link = root_;
  fs::remove_all(real);
  fs::create_directories(real);
  fs::create_directory_symlink(real, link);
  check_checkpoint_root_writable(link);
  save(10, 2);  // through the link
  EXPECT_TRUE(fs::exists(real + "/" + step_dir_name(10) + "/manifest.yaml"));
  EXPECT_EQ(CheckpointReader(link).read("adam.m"), tensors_.at("adam.m").data);
  EXPECT_EQ(CheckpointReader(link + "/").step(), 10);
  fs::remove(link);
  fs::remove_all(real);
}

TEST_F(CheckpointTest, PruningRemovesTheManifestFirstSoACrashNeverLeavesAHalfCheckpoint) {
  // keep_last = 1 prunes step 10 when step 20 is committed. A crash (an exception from the prune
  // hook) before each removal in turn must leave step 10 complete and loadable, or not committed
  // (ignored): never a manifest whose shards are gone.
  for (int crash_at = 0;; ++crash_at) {
    fs::remove_all(root_);
    save(10, 3);
    int removals = 0;
    bool crashed = false;
    set_prune_hook([&](const std::string&) {
      if (removals++ == crash_at) throw std::runtime_error("simulated crash");
    });
    try {
      save(20, 3, 1);
    } catch (const std::runtime_error&) {
      crashed = true;
    }
    set_prune_hook({});
    ASSERT_TRUE(is_committed(root_, 20));  // pruning comes after the commit
    if (is_committed(root_, 10)) {
      EXPECT_EQ(removals, 1) << "crash point " << crash_at
                             << ": a file was removed while the manifest remained";
      const CheckpointReader ck(step_dir(10));
      for (const auto& [name, t] : tensors_) EXPECT_EQ(ck.read(name), t.data) << crash_at;
    }
    // Without step 20 the next resume looks for the newest committed step: never a half step 10.
    fs::remove(root_ + "/latest");
    fs::remove_all(step_dir(20));
    if (!is_committed(root_, 10)) {
      EXPECT_EQ(find_latest(root_), std::nullopt) << crash_at;
    }
    if (!crashed) {
      EXPECT_FALSE(fs::exists(step_dir(10)));
      EXPECT_EQ(crash_at, 8);  // manifest, 3 shards, 3 indexes, the directory
      break;
    }
    ASSERT_LT(crash_at, 20);
  }
}

TEST_F(CheckpointTest, ManifestStepMustMatchItsDirectory) {
  save(10, 1);
  fs::rename(step_dir(10), step_dir(12));  // a step directory renamed (or a manifest copied)
  expect_input_error([&] { CheckpointReader{step_dir(12)}; }, step_dir(12) + "/manifest.yaml");
  expect_input_error([&] { CheckpointReader{step_dir(12)}; }, "records step 10");
  expect_input_error([&] { CheckpointReader{step_dir(12)}; }, "is step 12");
  fs::rename(step_dir(12), root_ + "/best");  // a copy under a name of one's own is fine
  EXPECT_EQ(CheckpointReader(root_ + "/best").step(), 10);
}

// Rewrites the manifest after edit(manifest).
void edit_manifest(const std::string& path, const std::function<void(YAML::Node&)>& edit) {
  YAML::Node m = YAML::LoadFile(path);
  edit(m);
  YAML::Emitter e;
  e << m;
  std::ofstream(path) << e.c_str() << "\n";
}

TEST_F(CheckpointTest, TamperedManifestsAreInputErrorsNamingTheFile) {
  save(10, 2);
  const std::string manifest = step_dir(10) + "/manifest.yaml", orig = root_ + "/manifest.orig";
  fs::copy_file(manifest, orig);
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::vector<std::pair<std::function<void(YAML::Node&)>, std::string>> cases = {
      {[&](YAML::Node& m) { m["shards"][0]["entries"][0]["offset"] = kMax; }, "out of range"},
      {[&](YAML::Node& m) { m["shards"][0]["entries"][0]["offset"] = kMax - 3; }, "out of range"},
      {[&](YAML::Node& m) { m["shards"][0]["entries"][0]["offset"] = -64; }, "out of range"},
      {[&](YAML::Node& m) { m["shards"][0]["entries"][0]["numel"] = kMax; }, "out of range"},
      {[&](YAML::Node& m) { m["shards"][0]["entries"][0]["global_offset"] = -1; }, "out of range"},
      {[&](YAML::Node& m) {
         auto shape = YAML::Node(YAML::NodeType::Sequence);
         for (int i = 0; i < 4; ++i) shape.push_back(int64_t{1} << 20);  // product 2^80
         m["shards"][0]["entries"][0]["global_shape"] = shape;
       },
       "tensor too large"},
      // (refused when the shard's real size is compared, naming the shard)
      {[&](YAML::Node& m) { m["shards"][0]["size"] = kMax; },
       "shard_r00000.bin: checkpoint shard is"},
      {[&](YAML::Node& m) { m["world"] = int64_t{1} << 31; }, "out of range"},
      {[&](YAML::Node& m) { m["world"] = 3; }, "expected 3 shards"},
      {[&](YAML::Node& m) { m["shards"][0]["entries"] = 7; }, "expected a list"},
      {[&](YAML::Node& m) { m["shards"][0]["entries"][0] = "scalar"; }, "expected a map"},
      {[&](YAML::Node& m) { m["shards"][1] = YAML::Node(YAML::NodeType::Sequence); },
       "expected a map"},
      {[&](YAML::Node& m) { m["shards"][0]["file"] = "../../etc/passwd"; }, "expected file"},
      {[&](YAML::Node& m) {
         m["shards"][0]["entries"].push_back(YAML::Clone(m["shards"][0]["entries"][0]));
       },
       "appears twice"},
      {[&](YAML::Node& m) { m["shards"][1]["rank"] = 0; }, "expected file"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    fs::copy_file(orig, manifest, fs::copy_options::overwrite_existing);
    edit_manifest(manifest, cases[i].first);
    try {
      const CheckpointReader ck(step_dir(10));
      for (const auto& [name, t] : tensors_) ck.read(name);
      ADD_FAILURE() << "case " << i << " accepted";
    } catch (const InputError& e) {
      const bool names_file = std::string(e.what()).find(manifest) != std::string::npos ||
                              std::string(e.what()).find(shard_path(10, 0)) != std::string::npos;
      EXPECT_TRUE(names_file) << i << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(cases[i].second), std::string::npos)
          << i << ": " << e.what();
    }
  }
}

TEST_F(CheckpointTest, OverlappingPiecesAreCoveredByTheFurthestReaching) {
  const Full& t = tensors_.at("blocks.0.flat");
  auto piece = [&](int64_t b, int64_t e) {
    return std::vector<TensorSlice>{{"w", t.shape, b, e - b, t.data.data() + b}};
  };
  write_shard(root_, 1, 0, piece(0, 30));
  write_shard(root_, 1, 1, piece(5, 10));
  write_shard(root_, 1, 2, piece(20, 37));
  commit_checkpoint(root_, 1, 3, {}, "", 0);
  const CheckpointReader ck(root_);
  EXPECT_EQ(ck.read("w"), t.data);
  for (int64_t b = 0; b < 37; ++b) {
    std::vector<float> got(static_cast<size_t>(37 - b));
    ck.read("w", b, 37 - b, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), t.data.begin() + b)) << b;
  }
}

TEST_F(CheckpointTest, StopSignalAbandonsALoadButNotASave) {
  set_stop_signal(SIGTERM);
  save(10, 2);  // a save asked for by the stop itself completes
  EXPECT_TRUE(is_committed(root_, 10));
  const CheckpointReader ck(root_);
  try {
    ck.read("adam.m");
    ADD_FAILURE() << "the load went on despite the stop signal";
  } catch (const StopRequested& e) {
    EXPECT_EQ(e.signal(), SIGTERM);
    EXPECT_EQ(static_cast<int>(e.code()), 128 + SIGTERM);
  }
  clear_stop_signal();
  EXPECT_EQ(ck.read("adam.m"), tensors_.at("adam.m").data);
}

TEST_F(CheckpointTest, CheckpointRootIsCheckedBeforeTheFirstStep) {
  const std::string root = root_ + "/a/b";
  check_checkpoint_root_writable(root);  // created
  EXPECT_TRUE(fs::is_directory(root));
  EXPECT_TRUE(fs::is_empty(root));  // the write probe is gone
  std::ofstream(root_ + "/file") << "x";
  expect_input_error([&] { check_checkpoint_root_writable(root_ + "/file"); }, "checkpoint.dir");
  expect_input_error([&] { check_checkpoint_root_writable(root_ + "/file"); }, "a regular file");
  expect_input_error([&] { check_checkpoint_root_writable(root_ + "/file/sub"); },
                     "checkpoint.dir");
  const std::string ck = root_ + "/ck";
  fs::create_directories(ck);
  fs::create_directory_symlink(root_ + "/a", ck + "/step_00000005");
  expect_input_error([&] { check_checkpoint_root_writable(ck); },
                     ck + "/step_00000005 is a symbolic link");
  fs::remove(ck + "/step_00000005");
  ASSERT_EQ(::mkfifo((ck + "/latest").c_str(), 0644), 0);
  expect_input_error([&] { check_checkpoint_root_writable(ck); }, ck + "/latest is a FIFO");
  fs::remove(ck + "/latest");
  fs::create_directories(ck + "/step_00000006");
  fs::create_symlink("/etc/hostname", ck + "/step_00000006/shard_r00000.bin");
  expect_input_error([&] { check_checkpoint_root_writable(ck); }, "shard_r00000.bin is a symbolic");
  fs::remove(ck + "/step_00000006/shard_r00000.bin");
  check_checkpoint_root_writable(ck);
  if (::geteuid() != 0) {  // root may write anywhere
    fs::permissions(ck, fs::perms::owner_read | fs::perms::owner_exec);
    expect_input_error([&] { check_checkpoint_root_writable(ck); }, "not writable");
    fs::permissions(ck, fs::perms::owner_all);
  }
}

TEST(EvalLayout, AnyCheckpointLayoutIsReadInAnyNumberOfProcesses) {
  JobConfig cfg;
  cfg.parallel.dp = 2;  // the layout of the saved job
  cfg.parallel.sp = 2;
  cfg.parallel.zero_stage = 3;
  cfg.train.global_batch = 8;
  cfg.train.micro_batch = 2;
  JobConfig same = cfg;
  EXPECT_EQ(fit_layout_to_world(same, 4), "");  // fits: kept
  EXPECT_EQ(same.parallel.dp, 2);
  EXPECT_EQ(same.parallel.sp, 2);
  JobConfig one = cfg;
  EXPECT_NE(
      fit_layout_to_world(one, 1).find("(dp=2 sp=2 pp=1 zero_stage=3) does not fit 1 process"),
      std::string::npos);
  EXPECT_EQ(one.parallel.dp, 1);
  EXPECT_EQ(one.parallel.sp, 1);
  EXPECT_EQ(one.parallel.pp, 1);
  EXPECT_EQ(one.parallel.zero_stage, 3);
  JobConfig three = cfg;
  EXPECT_NE(fit_layout_to_world(three, 3).find("reading it as dp=3 sp=1 pp=1 zero_stage=3"),
            std::string::npos);
  EXPECT_EQ(three.train.global_batch % (three.train.micro_batch * 3), 0);
  EXPECT_GE(three.train.global_batch, cfg.train.global_batch);
}

}  // namespace
}  // namespace strata
