#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/crc32c.h"
#include "core/error.h"
#include "offload/host_pool.h"
#include "offload/io_engine.h"

namespace strata {
namespace {

namespace fs = std::filesystem;

class IoEngineTest : public ::testing::TestWithParam<IoBackend> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata_io_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    if (GetParam() == IoBackend::io_uring && !io_uring_supported())
      GTEST_SKIP() << "io_uring refused here";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<IoEngine> make(IoOptions o = {}) {
    o.backend = GetParam();
    auto e = IoEngine::create(o);
    EXPECT_STREQ(e->backend(), GetParam() == IoBackend::io_uring ? "io_uring" : "threads");
    return e;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
  HostPool pool_;
};

void fill(void* p, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  auto* b = static_cast<unsigned char*>(p);
  for (int64_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(rng());
}

TEST(IoHelpers, PaddedSizeAndAlignmentQuery) {
  EXPECT_EQ(io_padded_size(1, 512), 512);
  EXPECT_EQ(io_padded_size(512, 512), 512);
  EXPECT_EQ(io_padded_size(1000003, 4096), 245 * 4096);
  EXPECT_EQ(io_padded_size(0, 4096), 0);
  EXPECT_EQ(parse_io_backend("threads"), IoBackend::threads);
  EXPECT_THROW(parse_io_backend("aio"), InputError);

  char tmpl[] = "/tmp/strata_io_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string f = std::string(tmpl) + "/a";
  IoOptions o;
  o.backend = IoBackend::threads;
  auto e = IoEngine::create(o);
  const int slot = e->register_file(f, true, 1 << 20);
  const DioAlignment& a = e->alignment(slot);
  EXPECT_GT(a.mem, 0);
  EXPECT_EQ(a.mem & (a.mem - 1), 0);
  EXPECT_EQ(a.offset & (a.offset - 1), 0);
  EXPECT_LE(a.offset, 4096);  // every Linux file system we run on takes 4 KiB direct I/O
  std::printf("/tmp direct-I/O alignment: mem %lld, offset %lld, from %s\n",
              static_cast<long long>(a.mem), static_cast<long long>(a.offset),
              align_source_name(a.source));
  EXPECT_EQ(fs::file_size(f), 1u << 20);  // capacity preallocated
  e.reset();
  fs::remove_all(tmpl);
}

// Unaligned logical sizes: the caller pads to the file's alignment, writes the padded block and
// compares checksums of the logical bytes after the round trip.
TEST_P(IoEngineTest, RoundTripUnalignedLogicalSizes) {
  IoOptions o;
  o.block_size = 256 << 10;  // several pieces per request
  o.queue_depth = 8;
  auto e = make(o);
  const int slot = e->register_file(path("swap"), true, 0);
  const int64_t al = e->alignment(slot).offset;
  const std::vector<int64_t> sizes = {1, 4095, 4097, 1000003, (3 << 20) + 17};
  int64_t off = 0;
  std::vector<int64_t> offsets;
  std::vector<uint32_t> crcs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t padded = io_padded_size(sizes[i], al);
    void* buf = pool_.alloc(padded);
    fill(buf, sizes[i], static_cast<uint32_t>(i + 1));
    crcs.push_back(crc32c(buf, static_cast<size_t>(sizes[i])));
    e->wait(e->write(slot, off, buf, padded));
    pool_.free(buf);
    offsets.push_back(off);
    off += padded;
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t padded = io_padded_size(sizes[i], al);
    void* buf = pool_.alloc(padded);
    std::memset(buf, 0, static_cast<size_t>(padded));
    e->wait(e->read(slot, offsets[i], buf, padded));
    EXPECT_EQ(crc32c(buf, static_cast<size_t>(sizes[i])), crcs[i]) << "size " << sizes[i];
    pool_.free(buf);
  }
  const IoStats s = e->stats();
  EXPECT_EQ(s.requests, 2 * static_cast<int64_t>(sizes.size()));
  EXPECT_GT(s.pieces, s.requests);  // the 1 MB and 3 MB requests were split
  EXPECT_EQ(s.short_retries, 0);
}

// Many requests outstanding at once at queue depth > 1, waited out of order; each piece lands
// where it belongs.
TEST_P(IoEngineTest, ManyConcurrentRequests) {
  IoOptions o;
  o.block_size = 16 << 10;
  o.queue_depth = 16;
  auto e = make(o);
  const int slot = e->register_file(path("many"), true, 8 << 20);
  constexpr int kN = 64;
  constexpr int64_t kSize = 64 << 10;
  char* src = static_cast<char*>(pool_.alloc(kN * kSize));
  char* dst = static_cast<char*>(pool_.alloc(kN * kSize));
  EXPECT_TRUE(e->register_buffers(pool_.regions()));
  fill(src, kN * kSize, 7);
  std::vector<IoTicket> t;
  for (int i = 0; i < kN; ++i) t.push_back(e->write(slot, i * kSize, src + i * kSize, kSize));
  EXPECT_GT(e->in_flight(), 1);
  EXPECT_LE(e->in_flight(), o.queue_depth);
  for (int i = kN - 1; i >= 0; --i) e->wait(t[static_cast<size_t>(i)]);
  t.clear();
  for (int i = 0; i < kN; ++i) t.push_back(e->read(slot, i * kSize, dst + i * kSize, kSize));
  // poll drives progress without blocking; eventually every ticket is done.
  for (int i = 0; i < kN; ++i)
    while (!e->poll(t[static_cast<size_t>(i)])) {
    }
  e->wait_all();
  EXPECT_EQ(std::memcmp(src, dst, kN * kSize), 0);
  EXPECT_EQ(e->stats().pieces, 2 * kN * (kSize / o.block_size));
  EXPECT_EQ(e->stats().bytes, 2 * kN * kSize);
  if (GetParam() == IoBackend::io_uring) {  // every piece used the registered buffer and file
    EXPECT_EQ(e->stats().fixed_buffer_pieces, e->stats().pieces);
    EXPECT_EQ(e->stats().fixed_file_pieces, e->stats().pieces);
  }
  EXPECT_TRUE(e->register_buffers({}));
}

void faulted_round_trip(IoEngine& e, HostPool& pool, const std::string& file) {
  const int slot = e.register_file(file, true, 0);
  constexpr int64_t kSize = (2 << 20) + 3 * 4096;
  char* src = static_cast<char*>(pool.alloc(kSize));
  char* dst = static_cast<char*>(pool.alloc(kSize));
  fill(src, kSize, 11);
  e.wait(e.write(slot, 0, src, kSize));
  e.wait(e.read(slot, 0, dst, kSize));
  EXPECT_EQ(crc32c(src, kSize), crc32c(dst, kSize));
  EXPECT_EQ(std::memcmp(src, dst, kSize), 0);
  pool.free(src);
  pool.free(dst);
}

TEST_P(IoEngineTest, InjectedShortTransfersAreResumed) {
  IoOptions o;
  o.block_size = 3 * 4096;  // half a piece is not aligned: resumes from the aligned offset below
  o.queue_depth = 4;
  o.fault = IoFault::short_transfer;
  o.fault_nth = 3;
  o.fault_repeat = true;
  auto e = make(o);
  faulted_round_trip(*e, pool_, path("short"));
  EXPECT_GT(e->stats().short_retries, 50);
  EXPECT_EQ(e->stats().eagain_retries, 0);
}

TEST_P(IoEngineTest, InjectedEagainIsRetried) {
  IoOptions o;
  o.block_size = 64 << 10;
  o.fault = IoFault::eagain;
  o.fault_nth = 2;
  o.fault_repeat = true;
  auto e = make(o);
  faulted_round_trip(*e, pool_, path("eagain"));
  EXPECT_GT(e->stats().eagain_retries, 10);
}

TEST_P(IoEngineTest, SingleInjectedShortTransfer) {
  IoOptions o;
  o.fault = IoFault::short_transfer;
  o.fault_nth = 1;
  auto e = make(o);
  faulted_round_trip(*e, pool_, path("one"));
  EXPECT_EQ(e->stats().short_retries, 1);
}

TEST_P(IoEngineTest, TruncatedFileReadNamesTheFile) {
  auto e = make();
  const std::string f = path("trunc");
  const int slot = e->register_file(f, true, 0);
  constexpr int64_t kSize = 1 << 20;
  void* buf = pool_.alloc(kSize);
  fill(buf, kSize, 3);
  e->wait(e->write(slot, 0, buf, kSize));
  ASSERT_EQ(::truncate(f.c_str(), 0), 0);  // someone truncates the swap file under us
  try {
    e->wait(e->read(slot, 0, buf, kSize));
    FAIL() << "read of a truncated file succeeded";
  } catch (const StrataError& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("end of file"), std::string::npos) << msg;
  }
  // The engine still works after a failed request.
  e->wait(e->write(slot, 0, buf, kSize));
  e->wait(e->read(slot, 0, buf, kSize));
  pool_.free(buf);
}

// A write's on_done runs once, on the driver, before wait() returns: ok for a landed write;
// requests larger than queue_depth pieces complete without the caller driving them.
TEST_P(IoEngineTest, OnDoneRunsWhenTheWriteLandsWithoutTheCallerDrivingIt) {
  IoOptions o;
  o.backend = GetParam();
  o.queue_depth = 2;
  o.block_size = 64 << 10;
  auto e = IoEngine::create(o);
  const int slot = e->register_file(path("done"), true, 0);
  constexpr int64_t kSize = 1 << 20;  // 16 pieces through a depth of 2
  void* buf = pool_.alloc(kSize);
  fill(buf, kSize, 5);
  std::atomic<int> calls{0};
  std::atomic<bool> ok{false};
  const IoTicket t = e->write(slot, 0, buf, kSize, [&](bool good) {
    ok = good;
    ++calls;
  });
  // No engine call until it is done: the driver thread alone moves all 16 pieces.
  for (int i = 0; i < 5000 && calls.load() == 0; ++i) usleep(1000);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(ok.load());
  EXPECT_TRUE(e->poll(t));
  e->wait(t);
  EXPECT_EQ(calls.load(), 1);
  pool_.free(buf);
}

TEST_P(IoEngineTest, DeletedFileAndUnalignedRequestsAreClearErrors) {
  auto e = make();
  const std::string f = path("gone");
  try {
    e->register_file(f, false, 0);
    FAIL() << "opened a missing file";
  } catch (const StrataError& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::strerror(ENOENT)), std::string::npos) << msg;
  }
  const int slot = e->register_file(path("ok"), true, 1 << 20);
  char* buf = static_cast<char*>(pool_.alloc(1 << 16));
  EXPECT_THROW(e->write(slot, 0, buf + 1, 4096), StrataError);  // misaligned buffer
  EXPECT_THROW(e->write(slot, 100, buf, 4096), StrataError);    // misaligned offset
  try {
    e->write(slot, 0, buf, 1000);  // unpadded length
    FAIL();
  } catch (const StrataError& err) {
    EXPECT_NE(std::string(err.what()).find("io_padded_size"), std::string::npos);
  }
  pool_.free(buf);
}

INSTANTIATE_TEST_SUITE_P(Backends, IoEngineTest,
                         ::testing::Values(IoBackend::io_uring, IoBackend::threads),
                         [](const auto& info) {
                           return info.param == IoBackend::io_uring ? "io_uring" : "threads";
                         });

// io_uring refused (as seccomp'd containers do) -> the threads backend serves the same calls.
TEST(IoEngineFallback, RefusedUringFallsBackToThreads) {
  IoOptions o;
  o.refuse_uring_errno = EPERM;
  auto e = IoEngine::create(o);
  EXPECT_STREQ(e->backend(), "threads");

  o.refuse_uring_errno = ENOSYS;
  EXPECT_STREQ(IoEngine::create(o)->backend(), "threads");

  o.backend = IoBackend::io_uring;  // demanded, not preferred: refusing it is an error
  EXPECT_THROW(IoEngine::create(o), StrataError);

  IoOptions forced;
  forced.backend = IoBackend::threads;
  EXPECT_STREQ(IoEngine::create(forced)->backend(), "threads");

  ASSERT_EQ(setenv("STRATA_IO_BACKEND", "threads", 1), 0);
  EXPECT_STREQ(IoEngine::create({})->backend(), "threads");
  unsetenv("STRATA_IO_BACKEND");
  if (io_uring_supported()) {
    EXPECT_STREQ(IoEngine::create({})->backend(), "io_uring");
  }
}

}  // namespace
}  // namespace strata
