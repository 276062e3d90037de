// Faults of the nvme swap tier under a live file lose nothing: a read-back is either the data that
// was written or a StrataError naming the tier, the swap file and the offset; and a handle whose
// read failed can still be discarded (the activation store does that while unwinding) without
// an internal error replacing the real one. Both I/O backends.
// The end-to-end counterpart, through the CLI, is tests/e2e/swap_faults.sh.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "offload/io_engine.h"
#include "offload/tier.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) {
    const uint32_t bits = rng() | 1u;  // never all-zero bytes: zeros from a hole must show
    std::memcpy(&x, &bits, 4);
  }
  return v;
}

int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

class SwapFaultTest : public ::testing::TestWithParam<IoBackend> {
 protected:
  void SetUp() override {
    if (GetParam() == IoBackend::io_uring && !io_uring_supported())
      GTEST_SKIP() << "io_uring refused here";
    char tmpl[] = "/tmp/strata_swap_faults_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    SwapOptions o;
    o.tier = SwapTierKind::nvme;
    o.dir = dir_;
    o.capacity_bytes = 64 << 20;
    o.io.backend = GetParam();
    o.io.block_size = 64 << 10;
    tier_ = SwapTier::create(o);
  }
  void TearDown() override {
    tier_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Lets the writes land (the file reaches `bytes`) and be retired, so that reads go to the
  // device rather than to the in-memory copy of a write still in flight. Should a read still be
  // served from memory, the tests below hold all the same (the data is then right).
  void settle(int64_t bytes) {
    for (int i = 0; i < 5000 && file_size(tier_->path()) < bytes; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int i = 0; i < 20; ++i) {
      tier_->poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Reads h: either exactly `want`, or a StrataError naming the tier, the swap file and an offset
  // (then returns false, leaving h to be discarded).
  bool read_is_right_or_clear_error(SwapTier::Handle h, const std::vector<float>& want,
                                    const std::string& what) {
    std::vector<float> got(want.size(), 0.0f);
    try {
      tier_->read(h, got.data());
    } catch (const StrataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("swap tier nvme"), std::string::npos) << what << ": " << msg;
      EXPECT_NE(msg.find(tier_->path()), std::string::npos) << what << ": " << msg;
      EXPECT_NE(msg.find("offset "), std::string::npos) << what << ": " << msg;
      EXPECT_EQ(msg.find("internal check failed"), std::string::npos) << what << ": " << msg;
      return false;
    }
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * 4), 0)
        << what << ": the read succeeded with wrong data";
    return true;
  }

  std::string dir_;
  std::unique_ptr<SwapTier> tier_;
};

constexpr int64_t kFloats = 100003;  // not a multiple of the direct-I/O unit
constexpr int64_t kBytes = kFloats * 4;

// Truncated after the first write landed, then re-extended by a second write: the first extent
// is now a hole that reads back as zeros with no I/O error. That must not pass as data.
TEST_P(SwapFaultTest, TruncatedAndReextendedFileIsAnErrorNotZeros) {
  const auto a = random_floats(kFloats, 1), b = random_floats(kFloats, 2);
  const SwapTier::Handle ha = tier_->write(a.data(), kBytes);
  settle(kBytes);
  ASSERT_EQ(::truncate(tier_->path().c_str(), 0), 0);
  const SwapTier::Handle hb = tier_->write(b.data(), kBytes);  // written after: intact
  settle(2 * kBytes);
  ASSERT_GT(file_size(tier_->path()), kBytes);  // the hole is inside the file again
  if (!read_is_right_or_clear_error(ha, a, "first extent (a hole now)")) {
    EXPECT_NO_THROW(tier_->discard(ha));
  }
  EXPECT_TRUE(read_is_right_or_clear_error(hb, b, "second extent (written after the truncation)"));
  EXPECT_EQ(tier_->bytes_used(), 0);
}

// The same with extents smaller than a file-system block (a 512-byte tensor under ext4's 4096-byte
// blocks and 512-byte direct I/O): had the second extent been placed in the block the first one
// shared, its write would allocate that block again and the first extent's bytes would read back
// as zeros with no hole to see, a wrong result (tests/e2e/swap_faults.sh met it now and then).
TEST_P(SwapFaultTest, TruncatedSmallExtentIsAnErrorNotZeros) {
  constexpr int64_t kSmall = 128;  // floats: 512 bytes
  const auto a = random_floats(kSmall, 8), b = random_floats(kSmall, 9);
  const SwapTier::Handle ha = tier_->write(a.data(), kSmall * 4);
  settle(kSmall * 4);
  ASSERT_EQ(::truncate(tier_->path().c_str(), 0), 0);
  const SwapTier::Handle hb = tier_->write(b.data(), kSmall * 4);
  settle(kSmall * 4 + 1);
  ASSERT_GT(file_size(tier_->path()), kSmall * 4);  // re-extended past the first extent
  if (!read_is_right_or_clear_error(ha, a, "small first extent (lost to the truncation)")) {
    EXPECT_NO_THROW(tier_->discard(ha));
  }
  EXPECT_TRUE(read_is_right_or_clear_error(hb, b, "small second extent (written after)"));
  EXPECT_EQ(tier_->bytes_used(), 0);
}

// Truncated with nothing written after: reads past the end of the file. The handle whose read
// failed is then discarded, as ActivationStore does while unwinding; that must not throw (an
// internal "already-waited ticket" error used to replace the real one).
TEST_P(SwapFaultTest, ReadPastTruncatedEndIsAnErrorAndTheHandleCanBeDiscarded) {
  const auto a = random_floats(kFloats, 3), b = random_floats(kFloats, 4);
  const SwapTier::Handle ha = tier_->write(a.data(), kBytes);
  const SwapTier::Handle hb = tier_->write(b.data(), kBytes);
  settle(2 * kBytes);
  ASSERT_EQ(::truncate(tier_->path().c_str(), 0), 0);
  tier_->prefetch(hb);  // in flight when its failure is collected
  if (!read_is_right_or_clear_error(ha, a, "read after truncation")) {
    EXPECT_NO_THROW(tier_->discard(ha));
  }
  if (!read_is_right_or_clear_error(hb, b, "prefetched read after truncation")) {
    EXPECT_NO_THROW(tier_->discard(hb));
  }
  EXPECT_EQ(tier_->bytes_used(), 0);
  // The tier still works.
  const auto c = random_floats(kFloats, 5);
  const SwapTier::Handle hc = tier_->write(c.data(), kBytes);
  settle(kBytes);
  EXPECT_TRUE(read_is_right_or_clear_error(hc, c, "write and read after the fault"));
}

// Deleted under the run: the open descriptor keeps the data; everything reads back.
TEST_P(SwapFaultTest, DeletedFileStillReadsBack) {
  const auto a = random_floats(kFloats, 6);
  const SwapTier::Handle ha = tier_->write(a.data(), kBytes);
  settle(kBytes);
  ASSERT_EQ(::unlink(tier_->path().c_str()), 0);
  const auto b = random_floats(kFloats, 7);
  const SwapTier::Handle hb = tier_->write(b.data(), kBytes);
  std::vector<float> got(static_cast<size_t>(kFloats));
  tier_->read(ha, got.data());
  EXPECT_EQ(std::memcmp(got.data(), a.data(), static_cast<size_t>(kBytes)), 0);
  tier_->read(hb, got.data());
  EXPECT_EQ(std::memcmp(got.data(), b.data(), static_cast<size_t>(kBytes)), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, SwapFaultTest,
                         ::testing::Values(IoBackend::io_uring, IoBackend::threads),
                         [](const auto& info) {
                           return info.param == IoBackend::io_uring ? "io_uring" : "threads";
                         });

}  // namespace
}  // namespace strata
