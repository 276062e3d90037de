#pragma once
// What the multi-rank benchmarks (pipeline_bench, vocab_bench) share: running a measurement on
// the first k ranks of the world while the others sleep (so on an oversubscribed machine they
// take no CPU from the ranks measured), a directory every rank sees, a random token shard, the
// process's CPU time and the machine's load average, and comma lists of flags.
#include <stdlib.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/rng.h"
#include "launch/data.h"
#include "parallel/comm.h"

namespace strata::bench {

// Below MPI's guaranteed tag bound (32767), above the pipeline executor's tags.
inline constexpr int kReleaseTag = 31000;

inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// /proc/loadavg's first three fields ("?" where there is none).
inline std::string load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "?";
  double a = 0, b = 0, c = 0;
  const int n = std::fscanf(f, "%lf %lf %lf", &a, &b, &c);
  std::fclose(f);
  if (n != 3) return "?";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", a, b, c);
  return buf;
}

// The ranks outside a run wait here without spinning until rank 0 releases them.
inline void idle_until_released(Comm& world) {
  float token = 0;
  CommHandle h = world.irecv(&token, 1, 0, kReleaseTag);
  while (!h.test()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// Runs fn on a communicator of the first k world ranks (k <= world size); the others sleep.
// k_is_self: the single rank 0 runs fn on no communicator at all (a Trainer's own SelfComm).
inline void on_first_ranks(Comm& world, int k, bool k_is_self,
                           const std::function<void(Comm*)>& fn) {
  std::unique_ptr<Comm> sub;
  if (!k_is_self) sub = world.split(world.rank() < k ? 0 : -1, world.rank(), "bench");
  if (world.rank() < k) {
    fn(sub.get());
    if (world.rank() == 0) {
      float token = 1;
      for (int r = k; r < world.size(); ++r) world.send(&token, 1, r, kReleaseTag);
    }
  } else {
    idle_until_released(world);
  }
  world.barrier();
}

// A directory every rank sees: made by rank 0 under /tmp/<prefix>_XXXXXX, its name broadcast;
// "" when it could not be made.
inline std::string shared_temp_dir(Comm& world, const std::string& prefix) {
  char path[256] = {};
  if (world.rank() == 0) {
    std::snprintf(path, sizeof path, "/tmp/%s_XXXXXX", prefix.c_str());
    if (!mkdtemp(path)) path[0] = 0;
  }
  world.broadcast_bytes(path, sizeof path, 0);
  return path;
}

// windows x seq (+1) random tokens below vocab (time, memory and traffic do not depend on the
// text); uint16 tokens when every id fits.
inline void write_random_shard(const std::string& path, int64_t windows, int64_t seq, int64_t vocab,
                               uint64_t seed, const std::string& key) {
  std::vector<int32_t> tokens(static_cast<size_t>(windows * seq + 1));
  RngStream rng{rng_key(seed, key), 0};
  for (auto& t : tokens) t = static_cast<int32_t>(rng.next_below(static_cast<uint64_t>(vocab)));
  write_token_shard(path, tokens, vocab <= 65536 ? 1 : 2);
}

// "a,b,c" -> {a, b, c} (empty items dropped).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace strata::bench
