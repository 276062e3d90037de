// The `swap` activation policy: saved sets of odd-sized tensors round-trip bit for bit through
// every tier (host, nvme on both I/O backends, cxl falling back to host here), a full tier is a
// clear error, the swap file goes away with the store (also while an exception unwinds) and
// swap files of dead processes are cleaned up at start.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "launch/job_config.h"
#include "offload/activation_store.h"
#include "offload/tier.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

int swap_files_in(const std::string& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    n += e.path().filename().string().starts_with("strata_swap_");
  return n;
}

// Odd sizes on purpose: none is a multiple of the 4 KiB direct-I/O unit, one is empty.
const std::vector<std::pair<std::string, int64_t>> kTensors = {
    {"x", 1027}, {"h1", 1}, {"qkv", 3 * 4099}, {"empty", 0}, {"ffn", 100003}};

// Random bit patterns (NaN payloads and denormals included): only a byte copy survives.
void fill(SavedTensors& s, uint32_t seed) {
  std::mt19937 rng(seed);
  for (const auto& [name, n] : kTensors) {
    float* p = s.add(name, n);
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = rng();
      std::memcpy(p + i, &bits, 4);
    }
  }
}

void expect_same(const SavedTensors& got, uint32_t seed) {
  SavedTensors want;
  fill(want, seed);
  EXPECT_EQ(got.bytes(), want.bytes());
  for (const auto& [name, n] : kTensors) {
    ASSERT_TRUE(got.has(name)) << name;
    if (n == 0) continue;  // an empty tensor has no buffer (memcmp of null pointers is UB)
    EXPECT_EQ(std::memcmp(got.get(name), want.get(name), static_cast<size_t>(n) * 4), 0) << name;
  }
}

class SwapTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata_swap_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // "host", "nvme-threads", "nvme-io_uring", "cxl-auto", "cxl-0"
  SwapOptions options(const std::string& kind) const {
    SwapOptions o;
    o.dir = dir_;
    o.capacity_bytes = 64 << 20;
    o.io.block_size = 64 << 10;  // several pieces per tensor
    if (kind == "host") o.tier = SwapTierKind::host;
    if (kind.starts_with("nvme")) {
      o.tier = SwapTierKind::nvme;
      o.io.backend = kind == "nvme-threads" ? IoBackend::threads : IoBackend::io_uring;
      o.checksums = kind == "nvme-crc";
    }
    if (kind.starts_with("cxl")) {
      o.tier = SwapTierKind::cxl;
      o.cxl_node = kind == "cxl-auto" ? "auto" : "0";
    }
    return o;
  }

  std::string dir_;
};

TEST_P(SwapTest, RoundTripsBitForBit) {
  if ((GetParam() == "nvme-io_uring" || GetParam() == "nvme-crc") && !io_uring_supported())
    GTEST_SKIP() << "io_uring refused here";
  const int64_t blocks = 4, micro_batches = 2;
  ActivationStore store(blocks, ActivationPolicy::swap, "x", SwapTier::create(options(GetParam())));
  store.set_policy(blocks - 1, ActivationPolicy::keep);  // like offload.keep_last = 1
  for (int64_t mb = 0; mb < micro_batches; ++mb)
    for (int64_t b = 0; b < blocks; ++b) {
      SavedTensors s;
      fill(s, static_cast<uint32_t>(mb * 100 + b));
      store.save(mb, b, std::move(s));
    }
  SavedTensors one;
  fill(one, 0);
  // Only the kept block is still activation memory; the rest lives in the tier.
  EXPECT_EQ(store.bytes_held(), micro_batches * one.bytes());
  int64_t payload = 0;
  for (const auto& [name, n] : kTensors) payload += n * 4;
  EXPECT_EQ(store.bytes_written(), micro_batches * (blocks - 1) * payload);
  EXPECT_GE(store.bytes_swapped(), micro_batches * (blocks - 1) * payload);
  EXPECT_EQ(store.swapped_blocks(), micro_batches * (blocks - 1));

  const auto no_rebuild = [](const float*, SavedTensors&) { FAIL() << "swap never recomputes"; };
  for (int64_t mb = micro_batches - 1; mb >= 0; --mb)
    for (int64_t b = blocks - 1; b >= 0; --b) {
      // Prefetch one ahead like Model::forward_backward; block 1 is taken without one.
      if (b > 0 && b != 2) store.prefetch(mb, b - 1);
      expect_same(store.take(mb, b, no_rebuild), static_cast<uint32_t>(mb * 100 + b));
    }
  EXPECT_TRUE(store.empty());
  EXPECT_EQ(store.bytes_swapped(), 0);
  EXPECT_STREQ(store.tier()->name(), GetParam() == "host" || GetParam().starts_with("cxl-auto")
                                         ? "host"
                                         : GetParam().substr(0, GetParam().find('-')).c_str());
}

// offload.writes_in_flight: each save first waits for the oldest sets' writes, so the memory
// unwritten sets hold (MemCategory::io) is at most that many sets. Saved back to back with no
// compute between, 8 MiB sets would otherwise all be in flight at once: a write takes
// milliseconds, a save microseconds. With one set, a kept block's save drains the last writes.
// (nvme only: the memory tiers' copies stay io memory once made.)
class SwapNvmeTest : public SwapTest {};

TEST_P(SwapNvmeTest, WritesInFlightAreBoundedBySets) {
  if (GetParam() == "nvme-io_uring" && !io_uring_supported())
    GTEST_SKIP() << "io_uring refused here";
  const int64_t blocks = 6, n = 2 << 20;  // 8 MiB a set
  for (const int64_t sets : {1, 2}) {
    ActivationStore store(blocks, ActivationPolicy::swap, "x",
                          SwapTier::create(options(GetParam())));
    store.set_writes_in_flight(sets);
    store.set_policy(blocks - 1, ActivationPolicy::keep);
    auto& tracker = MemoryTracker::instance();
    const int64_t io = static_cast<int>(MemCategory::io);
    const int64_t base = tracker.snapshot().current[io];
    std::vector<SavedTensors> made(blocks);  // all made first: the saves follow each other
    for (int64_t b = 0; b < blocks; ++b) {
      float* x = made[b].add("x", n);
      for (int64_t i = 0; i < n; i += 1024) x[i] = static_cast<float>(b * n + i);
    }
    const int64_t set_bytes = made[0].bytes();
    tracker.reset_peaks();
    for (int64_t b = 0; b < blocks; ++b) store.save(0, b, std::move(made[b]));
    const int64_t peak = tracker.snapshot().peak[io] - base;
    if (sets == 1)
      EXPECT_EQ(peak, set_bytes);
    else
      EXPECT_LE(peak, sets * set_bytes);
    if (sets == 1) {
      EXPECT_EQ(tracker.snapshot().current[io], base) << "drained by the kept save";
    }
    const auto no_rebuild = [](const float*, SavedTensors&) { FAIL() << "swap never recomputes"; };
    for (int64_t b = blocks - 1; b >= 0; --b) {
      const SavedTensors got = store.take(0, b, no_rebuild);
      for (int64_t i = 0; i < n; i += 1024)
        ASSERT_EQ(got.get("x")[i], static_cast<float>(b * n + i)) << "block " << b;
    }
  }
}

// A buffer several sets share (a tensor saved by several layers) goes to the tier once and comes
// back once, as one buffer shared by every set; while the caller still holds it, it is not read
// back at all.
TEST_P(SwapTest, SharedTensorIsWrittenOnce) {
  if ((GetParam() == "nvme-io_uring" || GetParam() == "nvme-crc") && !io_uring_supported())
    GTEST_SKIP() << "io_uring refused here";
  ActivationStore store(3, ActivationPolicy::swap, "x", SwapTier::create(options(GetParam())));
  const int64_t n = 5000;
  auto shared = std::make_shared<FloatBuffer>(n, MemCategory::activations, FloatBuffer::kPageAlign);
  for (int64_t i = 0; i < n; ++i) (*shared)[i] = static_cast<float>(i) * 0.5f;
  for (int64_t b = 0; b < 3; ++b) {
    SavedTensors s;
    s.add("own", 100)[0] = static_cast<float>(b);
    s.share("y", shared);
    store.save(0, b, std::move(s));
  }
  // Written once (with its copy path: the caller still holds it), plus each set's own tensor.
  EXPECT_EQ(store.bytes_written(), n * 4 + 3 * 100 * 4);
  const float* caller_copy = shared->data();
  const auto no_rebuild = [](const float*, SavedTensors&) { FAIL() << "swap never recomputes"; };
  // Still held by the caller: served from memory, not read back.
  SavedTensors s2 = store.take(0, 2, no_rebuild);
  EXPECT_EQ(s2.get("y"), caller_copy);
  EXPECT_EQ(s2.get("own")[0], 2.f);
  shared.reset();
  s2.clear();  // now nobody holds it: the next take reads it back, once
  SavedTensors s1 = store.take(0, 1, no_rebuild);
  SavedTensors s0 = store.take(0, 0, no_rebuild);
  EXPECT_EQ(s1.get("y"), s0.get("y"));  // one buffer read back, shared by both sets
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(s0.get("y")[i], static_cast<float>(i) * 0.5f) << i;
  EXPECT_EQ(s1.get("own")[0], 1.f);
  EXPECT_EQ(s0.get("own")[0], 0.f);
  EXPECT_TRUE(store.empty());
  EXPECT_EQ(store.bytes_swapped(), 0);
}

// Zero-copy: a page-aligned buffer handed over whole comes back bit for bit, whether it is still
// in flight (handed back without I/O) or already on the device (read into a fresh buffer).
TEST_P(SwapTest, BufferRoundTripWithAndWithoutIo) {
  if ((GetParam() == "nvme-io_uring" || GetParam() == "nvme-crc") && !io_uring_supported())
    GTEST_SKIP() << "io_uring refused here";
  auto tier = SwapTier::create(options(GetParam()));
  for (int64_t n : {int64_t{1}, int64_t{1023}, int64_t{1024}, int64_t{300001}}) {
    FloatBuffer a(n, MemCategory::activations, FloatBuffer::kPageAlign);
    for (int64_t i = 0; i < n; ++i) a[i] = static_cast<float>(i ^ 0x5a5a) + 0.25f;
    const auto h = tier->write_buffer(std::move(a));
    EXPECT_EQ(a.data(), nullptr);  // the tier has it
    tier->prefetch(h);
    FloatBuffer b = tier->read_buffer(h, MemCategory::activations);
    ASSERT_EQ(b.size(), n);
    EXPECT_EQ(b.category(), MemCategory::activations);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 4096, 0u);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b[i], static_cast<float>(i ^ 0x5a5a) + 0.25f) << i;
    // Once the write has been retired, the data comes from the device.
    FloatBuffer c(n, MemCategory::activations, FloatBuffer::kPageAlign);
    std::memcpy(c.data(), b.data(), static_cast<size_t>(n) * 4);
    const auto h2 = tier->write_buffer(std::move(c));
    for (int i = 0; i < 20; ++i) {
      usleep(1000);
      tier->poll();
    }
    FloatBuffer d = tier->read_buffer(h2, MemCategory::activations);
    EXPECT_EQ(std::memcmp(d.data(), b.data(), static_cast<size_t>(n) * 4), 0);
    EXPECT_EQ(tier->bytes_used(), 0);
  }
}

// The file's extents are reused after reads and discards: many rounds in a small capacity.
TEST_P(SwapTest, ReusesSpaceAcrossRounds) {
  if ((GetParam() == "nvme-io_uring" || GetParam() == "nvme-crc") && !io_uring_supported())
    GTEST_SKIP() << "io_uring refused here";
  SwapOptions o = options(GetParam());
  o.capacity_bytes = 1 << 20;
  auto tier = SwapTier::create(o);
  std::vector<float> src(50000), dst(50000);
  for (int round = 0; round < 20; ++round) {
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(round * 7 + i);
    const auto a = tier->write(src.data(), 200000);
    const auto b = tier->write(src.data(), 12345 * 4);
    const auto c = tier->write(src.data(), 4);
    tier->discard(b);
    tier->prefetch(a);
    tier->read(a, dst.data());
    EXPECT_EQ(std::memcmp(dst.data(), src.data(), 200000), 0) << round;
    tier->poll();
    tier->read(c, dst.data());
    EXPECT_EQ(dst[0], src[0]);
    EXPECT_EQ(tier->bytes_used(), 0);
  }
}

TEST_P(SwapTest, FullTierNamesTierFileAndCapacity) {
  if ((GetParam() == "nvme-io_uring" || GetParam() == "nvme-crc") && !io_uring_supported())
    GTEST_SKIP() << "io_uring refused here";
  SwapOptions o = options(GetParam());
  o.capacity_bytes = 64 << 10;
  auto tier = SwapTier::create(o);
  std::vector<float> buf(10000);
  tier->write(buf.data(), 40000);
  try {
    tier->write(buf.data(), 40000);
    FAIL() << "expected the tier to be full";
  } catch (const StrataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::string("swap tier ") + tier->name()), std::string::npos) << msg;
    EXPECT_NE(msg.find("capacity of 64"), std::string::npos) << msg;
    EXPECT_NE(msg.find("offload.capacity_gb"), std::string::npos) << msg;
    if (GetParam().starts_with("nvme")) {
      EXPECT_NE(msg.find(tier->path()), std::string::npos) << msg;
    }
  }
  // A failed write leaves the tier usable.
  EXPECT_LE(tier->bytes_used(), 64 << 10);
}

INSTANTIATE_TEST_SUITE_P(Tiers, SwapNvmeTest, ::testing::Values("nvme-threads", "nvme-io_uring"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });
INSTANTIATE_TEST_SUITE_P(Tiers, SwapTest,
                         ::testing::Values("host", "nvme-threads", "nvme-io_uring", "nvme-crc",
                                           "cxl-auto", "cxl-0"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

class SwapFileTest : public SwapTest {};

TEST_F(SwapFileTest, RemovedWhenTheStoreIsDestroyed) {
  SwapOptions o = options("nvme-threads");
  {
    ActivationStore store(2, ActivationPolicy::swap, "x", SwapTier::create(o));
    const std::string path = store.tier()->path();
    EXPECT_TRUE(path.starts_with(dir_ + "/strata_swap_" + std::to_string(getpid()) + "_r0"));
    EXPECT_TRUE(fs::exists(path));
    SavedTensors s;
    fill(s, 1);
    store.save(0, 0, std::move(s));  // still held (and maybe in flight) at destruction
  }
  EXPECT_EQ(swap_files_in(dir_), 0);
}

TEST_F(SwapFileTest, RemovedWhenAnExceptionUnwinds) {
  SwapOptions o = options("nvme-threads");
  o.rank = 3;
  std::string path;
  try {
    ActivationStore store(2, ActivationPolicy::swap, "x", SwapTier::create(o));
    path = store.tier()->path();
    SavedTensors s;
    fill(s, 2);
    store.save(0, 0, std::move(s));
    EXPECT_EQ(swap_files_in(dir_), 1);
    throw std::runtime_error("step failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_NE(path.find("_r3"), std::string::npos) << path;
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(swap_files_in(dir_), 0);
}

TEST_F(SwapFileTest, StaleFilesOfDeadProcessesAreRemovedAtStart) {
  // A PID that is certainly gone: a child that has exited and been reaped.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string stale = dir_ + "/strata_swap_" + std::to_string(child) + "_r0.bin";
  const std::string stale2 = dir_ + "/strata_swap_" + std::to_string(child) + "_r1_2.bin";
  const std::string live = dir_ + "/strata_swap_" + std::to_string(getppid()) + "_r0.bin";
  const std::string other = dir_ + "/notes.bin";
  for (const auto& p : {stale, stale2, live, other}) std::ofstream(p) << "x";

  {
    auto tier = SwapTier::create(options("nvme-threads"));
    EXPECT_FALSE(fs::exists(stale));
    EXPECT_FALSE(fs::exists(stale2));
    EXPECT_TRUE(fs::exists(live));   // its process is alive
    EXPECT_TRUE(fs::exists(other));  // not a swap file
    EXPECT_TRUE(fs::exists(tier->path()));
  }
  EXPECT_EQ(swap_files_in(dir_), 1);  // only the live process's file is left
  EXPECT_EQ(remove_stale_swap_files(dir_), 0);
}

TEST_F(SwapFileTest, MissingCxlNodeIsAnInputError) {
  SwapOptions o = options("cxl-0");
  o.cxl_node = "999";
  try {
    SwapTier::create(o);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("offload.cxl_node"), std::string::npos) << e.what();
  }
}

TEST(SwapPolicy, ParsesNames) {
  EXPECT_EQ(parse_activation_policy("swap"), ActivationPolicy::swap);
  EXPECT_STREQ(activation_policy_name(ActivationPolicy::swap), "swap");
  EXPECT_EQ(parse_swap_tier("cxl"), SwapTierKind::cxl);
  EXPECT_THROW(parse_swap_tier("disk"), InputError);
}

// Without a tier the store swaps to host memory, so `swap` works wherever a store is built.
TEST(SwapPolicy, DefaultsToTheHostTier) {
  ActivationStore store(1, ActivationPolicy::swap);
  SavedTensors s;
  fill(s, 9);
  store.save(0, 0, std::move(s));
  EXPECT_EQ(store.bytes_held(), 0);
  ASSERT_NE(store.tier(), nullptr);
  EXPECT_STREQ(store.tier()->name(), "host");
  expect_same(store.take(0, 0, nullptr), 9);
}

// The offload section: defaults, strict validation, and a dump that parses back the same.
TEST(SwapJobConfig, DefaultsValidationAndDump) {
  const std::string base = "data:\n  train: x\n";
  const JobConfig d = parse_job_config(base, "job.yaml");
  EXPECT_EQ(d.offload.tier, "nvme");
  EXPECT_EQ(d.offload.dir, "/tmp/strata_swap");
  EXPECT_EQ(d.offload.capacity_gb, 16);
  EXPECT_EQ(d.offload.cxl_node, "auto");
  EXPECT_EQ(d.offload.keep_last, 1);
  EXPECT_EQ(d.offload.writes_in_flight, 1);
  EXPECT_EQ(d.offload.queue_depth, 32);
  EXPECT_EQ(d.offload.block_kb, 1024);

  auto error_of = [&](const std::string& set) -> std::string {
    try {
      parse_job_config(base, "job.yaml", {set});
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("offload.tier=disk").find("offload.tier=disk: expected one of host|nvme|cxl"),
            std::string::npos);
  EXPECT_NE(error_of("offload.capacity_gb=0").find("offload.capacity_gb"), std::string::npos);
  EXPECT_NE(
      error_of("offload.cxl_node=first").find("offload.cxl_node=first: expected auto or a NUMA"),
      std::string::npos);
  EXPECT_NE(error_of("offload.cxl_node=-1").find("offload.cxl_node"), std::string::npos);
  EXPECT_NE(error_of("offload.keep_last=-1").find("offload.keep_last"), std::string::npos);
  EXPECT_NE(error_of("offload.queue_depth=0").find("offload.queue_depth"), std::string::npos);
  EXPECT_NE(error_of("offload.writes_in_flight=0")
                .find("offload.writes_in_flight=0: expected a "
                      "value >= 1"),
            std::string::npos);
  EXPECT_NE(error_of("offload.block_kb=6").find("offload.block_kb=6: expected a multiple of 4"),
            std::string::npos);
  EXPECT_NE(error_of("offload.dir=").find("offload.dir"), std::string::npos);
  EXPECT_EQ(error_of("offload.cxl_node=2"), "");  // existence is checked when the tier is built

  const JobConfig c = parse_job_config(
      base, "job.yaml",
      {"offload.policy=swap", "offload.tier=cxl", "offload.dir=/mnt/nvme/swap",
       "offload.capacity_gb=3", "offload.cxl_node=1", "offload.keep_last=2",
       "offload.queue_depth=8", "offload.block_kb=256", "offload.writes_in_flight=3"});
  const JobConfig back = parse_job_config(dump_job_config(c), "dump.yaml");
  EXPECT_EQ(back.offload.policy, "swap");
  EXPECT_EQ(back.offload.tier, "cxl");
  EXPECT_EQ(back.offload.dir, "/mnt/nvme/swap");
  EXPECT_EQ(back.offload.capacity_gb, 3);
  EXPECT_EQ(back.offload.cxl_node, "1");
  EXPECT_EQ(back.offload.keep_last, 2);
  EXPECT_EQ(back.offload.queue_depth, 8);
  EXPECT_EQ(back.offload.block_kb, 256);
  EXPECT_EQ(back.offload.writes_in_flight, 3);
}

}  // namespace
}  // namespace strata
