#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "offload/host_pool.h"

namespace strata {
namespace {

int64_t io_current() {
  return MemoryTracker::instance().snapshot().current[static_cast<int>(MemCategory::io)];
}

TEST(HostPool, BlocksAreAlignedAndUsable) {
  HostPool pool;
  for (int64_t n : {1, 100, 4096, 4097, 65537, 1000003, 5 << 20}) {
    char* p = static_cast<char*>(pool.alloc(n));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % HostPool::kAlignment, 0u) << n;
    std::memset(p, 0xab, static_cast<size_t>(HostPool::class_size(n)));  // the whole class
    pool.free(p);
  }
}

// The documented bound: class - n < max(4 KiB, n / 4), so at most 25% above 16 KiB.
TEST(HostPool, ClassRoundingBound) {
  for (int64_t n = 1; n <= (int64_t{1} << 34); n = n * 9 / 8 + 1) {
    for (int64_t m : {n, n + 1, n + 4095}) {
      const int64_t c = HostPool::class_size(m);
      ASSERT_GE(c, m);
      ASSERT_EQ(c % HostPool::kAlignment, 0);
      ASSERT_LT(c - m, std::max<int64_t>(4096, m / 4)) << m;
      ASSERT_EQ(HostPool::class_size(c), c) << m;  // classes are fixed points
      if (m >= (16 << 10)) {
        ASSERT_LE(static_cast<double>(c), 1.25 * static_cast<double>(m));
      }
    }
  }
  EXPECT_EQ(HostPool::class_size(1), 4096);
  EXPECT_EQ(HostPool::class_size((1 << 20) + 1), (1 << 20) + (1 << 18));  // not 2 MiB
  EXPECT_EQ(HostPool::class_size(3 << 20), 3 << 20);
}

TEST(HostPool, ReuseDoesNotGrowOverThousandCycles) {
  HostPool pool;
  const std::vector<int64_t> sizes = {4096, 70000, 1 << 20, (1 << 20) + 5, 300000, 12345};
  HostPoolStats after_first;
  for (int cycle = 0; cycle < 1000; ++cycle) {
    std::vector<void*> ps;
    for (int64_t s : sizes) ps.push_back(pool.alloc(s - cycle % 3));  // same classes each time
    for (void* p : ps) pool.free(p);
    if (cycle == 0) after_first = pool.stats();
  }
  const HostPoolStats s = pool.stats();
  EXPECT_EQ(s.bytes_held, after_first.bytes_held);
  EXPECT_EQ(s.maps, after_first.maps);
  EXPECT_EQ(s.maps, static_cast<int64_t>(sizes.size()));  // one block per class, ever
}

TEST(HostPool, AccountingAndStats) {
  const int64_t base = io_current();
  {
    HostPool pool;
    void* a = pool.alloc(1000);           // class 4 KiB
    void* b = pool.alloc((1 << 20) + 1);  // class 1.25 MiB
    HostPoolStats s = pool.stats();
    const int64_t held = 4096 + (1 << 20) + (1 << 18);
    EXPECT_EQ(s.bytes_held, held);
    EXPECT_EQ(s.bytes_served, 1000 + (1 << 20) + 1);
    EXPECT_EQ(s.held_beyond_served, held - s.bytes_served);
    EXPECT_EQ(s.blocks_held, 2);
    EXPECT_EQ(io_current() - base, held);  // charged to MemCategory::io
    EXPECT_EQ(pool.regions().size(), 2u);

    pool.free(b);
    s = pool.stats();
    EXPECT_EQ(s.bytes_held, held);  // kept for reuse
    EXPECT_EQ(s.bytes_served, 1000);
    EXPECT_EQ(s.blocks_free, 1);
    pool.trim();
    s = pool.stats();
    EXPECT_EQ(s.bytes_held, 4096);
    EXPECT_EQ(io_current() - base, 4096);
    EXPECT_THROW(pool.free(b), StrataError);  // no longer the pool's
    pool.free(a);
    EXPECT_THROW(pool.free(a), StrataError);  // double free
  }
  EXPECT_EQ(io_current(), base);  // everything released with the pool
}

TEST(HostPool, BlocksAreLocked) {
  HostPool pool;
  void* p = pool.alloc(1 << 20);
  if (!pool.locking()) GTEST_SKIP() << "mlock refused in this environment";
  EXPECT_EQ(pool.stats().bytes_locked, pool.stats().bytes_held);
  pool.free(p);

  HostPoolOptions o;
  o.lock = false;
  HostPool unlocked(o);
  unlocked.alloc(1 << 20);
  EXPECT_EQ(unlocked.stats().bytes_locked, 0);
}

// Drops CAP_IPC_LOCK from this thread's effective set (root ignores RLIMIT_MEMLOCK with it) and
// lowers RLIMIT_MEMLOCK; both restored on destruction.
class LowMemlock {
 public:
  explicit LowMemlock(rlim_t limit) {
    ok_ = getrlimit(RLIMIT_MEMLOCK, &saved_) == 0;
    hdr_.version = _LINUX_CAPABILITY_VERSION_3;
    hdr_.pid = 0;
    have_caps_ = syscall(SYS_capget, &hdr_, caps_) == 0;
    if (have_caps_) {
      __user_cap_data_struct lowered[2];
      std::memcpy(lowered, caps_, sizeof(caps_));
      lowered[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
      ok_ = ok_ && syscall(SYS_capset, &hdr_, lowered) == 0;
    }
    rlimit low = saved_;
    low.rlim_cur = limit;
    ok_ = ok_ && setrlimit(RLIMIT_MEMLOCK, &low) == 0;
  }
  ~LowMemlock() {
    setrlimit(RLIMIT_MEMLOCK, &saved_);
    if (have_caps_) syscall(SYS_capset, &hdr_, caps_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  __user_cap_header_struct hdr_{};
  __user_cap_data_struct caps_[2]{};
  bool have_caps_ = false;
  bool ok_ = false;
};

TEST(HostPool, MemlockLimitIsExplained) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &before), 0);
  {
    LowMemlock low(64 << 10);
    if (!low.ok()) GTEST_SKIP() << "cannot lower RLIMIT_MEMLOCK here";
    // AddressSanitizer turns mlock into a no-op that succeeds; nothing to observe then.
    std::vector<char> probe(1 << 20);
    if (mlock(probe.data(), probe.size()) == 0) {
      munlock(probe.data(), probe.size());
      GTEST_SKIP() << "mlock is not enforced here (sanitizer interceptor?)";
    }

    HostPoolOptions strict;
    strict.fail_if_unlockable = true;
    HostPool strict_pool(strict);
    try {
      strict_pool.alloc(4 << 20);
      FAIL() << "mlock of 4 MiB under a 64 KiB RLIMIT_MEMLOCK succeeded";
    } catch (const StrataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("RLIMIT_MEMLOCK is 64.0KiB"), std::string::npos) << msg;
      EXPECT_NE(msg.find("ulimit -l"), std::string::npos) << msg;
    }
    EXPECT_EQ(strict_pool.stats().bytes_held, 0);  // nothing leaked by the failed alloc

    HostPool lenient;  // default: warn once and continue unlocked
    void* p = lenient.alloc(4 << 20);
    ASSERT_NE(p, nullptr);
    EXPECT_FALSE(lenient.locking());
    EXPECT_EQ(lenient.stats().bytes_locked, 0);
    std::memset(p, 1, 4 << 20);
    lenient.free(lenient.alloc(8 << 20));  // later blocks do not retry (or warn again)
  }
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &after), 0);
  EXPECT_EQ(after.rlim_cur, before.rlim_cur);  // restored
}

}  // namespace
}  // namespace strata
