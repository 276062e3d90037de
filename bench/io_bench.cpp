// Direct-I/O throughput of the offload IoEngine: writes then reads N MiB of one file with a given
// block size and queue depth on each backend and prints MB/s (10^6 bytes per second, as fio
// reports), plus the fio commands that measure the same thing when fio is installed.
//   io_bench [--mib 256] [--dir /tmp] [--bs 1M] [--qd 32] [--backend both|io_uring|threads]
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/crc32c.h"
#include "core/error.h"
#include "offload/host_pool.h"
#include "offload/io_engine.h"

namespace {

using strata::IoBackend;

// "4096", "512k", "1M", "1G" (powers of 1024): bytes, a multiple of 4 KiB in [4 KiB, 1 GiB] as
// the engine takes them (anything else, "1x" or "nan" too, is the flag's error, not the engine's
// internal check).
int64_t parse_block_size(const std::string& flag, const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  double mul = 1;
  if (end != s.c_str()) {
    if (*end == 'k' || *end == 'K') mul = 1 << 10;
    if (*end == 'm' || *end == 'M') mul = 1 << 20;
    if (*end == 'g' || *end == 'G') mul = 1 << 30;
    if (mul > 1) ++end;
  }
  const double bytes = v * mul;
  if (end == s.c_str() || *end != 0 || !std::isfinite(bytes) || bytes < 4096 || bytes > (1 << 30) ||
      bytes != std::floor(bytes) || std::fmod(bytes, 4096) != 0)
    throw strata::InputError(flag +
                             ": expected a multiple of 4 KiB from 4k to 1G (such as 4096, 512k, "
                             "1M), got '" +
                             s + "'");
  return static_cast<int64_t>(bytes);
}

bool have_fio() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    const size_t end = p.find(':', start);
    const std::string dir =
        p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty() && access((dir + "/fio").c_str(), X_OK) == 0) return true;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return false;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run(IoBackend backend, int64_t bytes, const std::string& dir, int64_t bs, int qd) {
  strata::IoOptions o;
  o.backend = backend;
  o.block_size = bs;
  o.queue_depth = qd;
  o.threads = qd;  // the threads backend gets one worker per queue slot, as fio's psync jobs
  auto engine = strata::IoEngine::create(o);
  const std::string file = dir + "/strata_io_bench." + std::to_string(getpid());
  const int slot = engine->register_file(file, true, bytes);

  strata::HostPool pool;
  char* buf = static_cast<char*>(pool.alloc(bytes));
  for (int64_t i = 0; i < bytes; i += 8) std::memcpy(buf + i, &i, 8);
  const uint32_t crc = strata::crc32c(buf, static_cast<size_t>(bytes));
  const bool fixed = engine->register_buffers(pool.regions());

  auto t0 = std::chrono::steady_clock::now();
  engine->wait(engine->write(slot, 0, buf, bytes));
  const double tw = seconds_since(t0);
  std::memset(buf, 0, static_cast<size_t>(bytes));
  t0 = std::chrono::steady_clock::now();
  engine->wait(engine->read(slot, 0, buf, bytes));
  const double tr = seconds_since(t0);
  const bool ok = strata::crc32c(buf, static_cast<size_t>(bytes)) == crc;
  const strata::IoStats s = engine->stats();
  std::printf(
      "%-9s bs=%lldK qd=%d size=%lldMiB  write %8.1f MB/s  read %8.1f MB/s  (%lld pieces, "
      "%s buffers, %s)\n",
      engine->backend(), static_cast<long long>(bs >> 10), qd, static_cast<long long>(bytes >> 20),
      static_cast<double>(bytes) / tw / 1e6, static_cast<double>(bytes) / tr / 1e6,
      static_cast<long long>(s.pieces),
      fixed && std::strcmp(engine->backend(), "io_uring") == 0 ? "registered" : "plain",
      ok ? "checksum ok" : "CHECKSUM MISMATCH");
  engine.reset();
  unlink(file.c_str());
  if (!ok) throw strata::StrataError("io_bench: data read back differs from data written");
}

}  // namespace

int run_bench(int argc, char** argv) {
  int64_t mib = 256, bs = 1 << 20, qd = 32;
  std::string dir = "/tmp", which = "both";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw strata::InputError("flag " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--mib")
      mib = strata::bench_number("io_bench", a, v);
    else if (a == "--dir")
      dir = v;
    else if (a == "--bs")
      bs = parse_block_size(a, v);
    else if (a == "--qd")
      qd = strata::bench_number("io_bench", a, v);
    else if (a == "--backend")
      which = v;
    else
      throw strata::InputError("unknown flag " + a +
                               " (--mib N --dir D --bs SIZE --qd N --backend "
                               "both|io_uring|threads)");
  }
  // --mib 0 or less reached the host pool's internal check, and mib << 20 overflowed past
  // 8 TiB; --qd 0 the engine's internal check, --qd 100000 thread creation (uncaught:
  // SIGABRT); an unknown --backend measured nothing and exited 0.
  if (mib < 1 || mib > (int64_t{1} << 20))
    throw strata::InputError("--mib: expected a size in MiB from 1 to 1048576, got " +
                             std::to_string(mib));
  if (qd < 1 || qd > 4096)
    throw strata::InputError("--qd: expected a queue depth from 1 to 4096, got " +
                             std::to_string(qd));
  if (which != "both" && which != "io_uring" && which != "threads")
    throw strata::InputError("--backend: expected both, io_uring or threads, got '" + which + "'");
  const int64_t bytes = mib << 20;
  if (which == "both" || which == "io_uring")
    run(IoBackend::io_uring, bytes, dir, bs, static_cast<int>(qd));
  if (which == "both" || which == "threads")
    run(IoBackend::threads, bytes, dir, bs, static_cast<int>(qd));
  if (have_fio()) {
    const std::string common = " --ioengine=io_uring --direct=1 --bs=" + std::to_string(bs >> 10) +
                               "k --iodepth=" + std::to_string(qd) +
                               " --size=" + std::to_string(mib) + "m --filename=" + dir +
                               "/fio_io_bench";
    std::printf("compare: fio --name=w%s --rw=write\n", common.c_str());
    std::printf("compare: fio --name=r%s --rw=read\n", common.c_str());
    std::printf("         (then rm %s/fio_io_bench)\n", dir.c_str());
  } else {
    std::printf("fio not installed: no reference figure (apt-get install -y fio)\n");
  }
  return 0;
}

int main(int argc, char** argv) {
  return strata::bench_main("io_bench", [&] { return run_bench(argc, argv); });
}
