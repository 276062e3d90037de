// ZeRO benchmark: per-rank peak memory by category, model-state bytes, data-parallel
// communication per step and step time of full Trainer steps at ZeRO stages 0, 1, 2 and 3, next
// to what the ZeRO paper (Rajbhandari et al., 2020) predicts for model states per rank.
//
//   mpirun --allow-run-as-root --oversubscribe -np N -x OMP_NUM_THREADS=1
//       build/bench/zero_bench [--dim 256] [--layers 4] [--vocab 4096] [--seq 128]
//       [--global-batch 8] [--micro-batch 1] [--steps 2] [--heads H] [--kv-heads K] [--ffn F]
//       [--pattern LLLS] [--keep-data]
//   build/bench/zero_bench ...   (no mpirun: one rank on the size-1 communicator)
//
// No data files are needed: rank 0 writes a random token shard to a temporary directory and
// broadcasts its path. Every stage gets a fresh Trainer (parallel.dp = ranks,
// parallel.zero_stage = s), runs one warm-up step, then MemoryTracker peaks and the dp
// communicator's counters are reset and --steps steps are timed. The Trainer is destroyed before
// the next stage is built and the tracker's current values are checked to be back where they
// were before it.
//
// Memory: the tracker is process-wide, so a peak is this rank's. Params, grads and optimizer
// states that persist between steps are already in the current values when the peaks are reset;
// the peak adds what lives only during the step (stage 3's gathered units, stage 2-3's full
// gradients of the units in backward, reduce-scatter scratch). "model st" is the sum of the
// params, grads and optimizer peaks (they need not coincide in time, so it bounds the model-state
// peak from above); "total" is the tracker's simultaneous peak over all categories.
//
// Communication: bytes on the dp communicator per step in the convention of comm_stats.h (an
// all-reduce of Psi bytes counts 2 Psi, a reduce-scatter or all-gather of Psi counts Psi), and
// their sum over 2 Psi, Psi = the parameter bytes padded per unit to a multiple of the rank count.
// all_reduce includes the two one-double all-reduces of every step (loss sum, gradient norm).
// With one micro-batch per rank stages 0-2 read 1.00x and stage 3 (3 Psi - head) / 2 Psi; with m
// micro-batches per rank stages 2-3 reduce (and stage 3 gathers) after every micro-batch, so
// stage 2 reads (m + 1) / 2 and stage 3 m (3 Psi - head) / 2 Psi: the "expect" column.
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "launch/data.h"
#include "launch/job_config.h"
#include "launch/trainer.h"
#include "parallel/world.h"

using namespace strata;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// What one stage measured on one rank; reduced over ranks with a max, element by element.
struct StageResult {
  // Peaks over the timed steps, minus the tracker's current values before the Trainer existed.
  std::array<int64_t, kNumMemCategories> peak{};
  int64_t total_peak = 0;
  // Current values when the peaks were reset (after the warm-up step): persistent state.
  std::array<int64_t, kNumMemCategories> persistent{};
  int64_t ar = 0, rs = 0, ag = 0;  // dp bytes per step
  int64_t leak = 0;                // |current after teardown - before construction|, summed
  double ms = 0;                   // per step
};

constexpr int kPacked = 2 * kNumMemCategories + 5;

std::array<int64_t, kPacked> pack(const StageResult& r) {
  std::array<int64_t, kPacked> a{};
  int i = 0;
  for (int c = 0; c < kNumMemCategories; ++c) a[i++] = r.peak[c];
  for (int c = 0; c < kNumMemCategories; ++c) a[i++] = r.persistent[c];
  a[i++] = r.total_peak;
  a[i++] = r.ar;
  a[i++] = r.rs;
  a[i++] = r.ag;
  a[i++] = r.leak;
  return a;
}

StageResult unpack(const std::array<int64_t, kPacked>& a, double ms) {
  StageResult r;
  int i = 0;
  for (int c = 0; c < kNumMemCategories; ++c) r.peak[c] = a[i++];
  for (int c = 0; c < kNumMemCategories; ++c) r.persistent[c] = a[i++];
  r.total_peak = a[i++];
  r.ar = a[i++];
  r.rs = a[i++];
  r.ag = a[i++];
  r.leak = a[i++];
  r.ms = ms;
  return r;
}

int64_t at(const std::array<int64_t, kNumMemCategories>& a, MemCategory c) {
  return a[static_cast<int>(c)];
}
int64_t model_states(const std::array<int64_t, kNumMemCategories>& a) {
  return at(a, MemCategory::params) + at(a, MemCategory::grads) + at(a, MemCategory::optimizer);
}

// A directory every rank sees: made by rank 0, its name broadcast.
std::string shared_temp_dir(Comm& world) {
  char path[256] = {};
  if (world.rank() == 0) {
    std::strcpy(path, "/tmp/strata_zero_bench_XXXXXX");
    if (!mkdtemp(path)) path[0] = 0;
  }
  world.broadcast_bytes(path, sizeof path, 0);
  return path;
}

// The exit code of an error: a StrataError's own (2 for bad input), else 1.
int exit_code(const std::exception& e) {
  const auto* s = dynamic_cast<const StrataError*>(&e);
  return s ? static_cast<int>(s->code()) : 1;
}

int run_bench(int argc, char** argv) {
  int64_t dim = 256, layers = 4, vocab = 4096, seq = 128, global_batch = 8, micro = 1, steps = 2;
  int64_t heads = 0, kv_heads = 0, ffn = 0;
  std::string pattern = "LLLS";
  bool keep_data = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "zero_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&] { return bench_number("zero_bench", a, next()); };
    if (a == "--dim")
      dim = number();
    else if (a == "--layers")
      layers = number();
    else if (a == "--vocab")
      vocab = number();
    else if (a == "--seq")
      seq = number();
    else if (a == "--global-batch")
      global_batch = number();
    else if (a == "--micro-batch")
      micro = number();
    else if (a == "--steps")
      steps = number();
    else if (a == "--heads")
      heads = number();
    else if (a == "--kv-heads")
      kv_heads = number();
    else if (a == "--ffn")
      ffn = number();
    else if (a == "--pattern")
      pattern = next();
    else if (a == "--keep-data")
      keep_data = true;
    else {
      std::fprintf(stderr, "zero_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (heads <= 0) heads = std::max<int64_t>(1, dim / 64);
  if (kv_heads <= 0) kv_heads = heads % 2 == 0 ? heads / 2 : heads;
  if (ffn <= 0) ffn = (dim * 8 / 3 + 15) / 16 * 16;
  if (steps < 1) steps = 1;
  // Sizes that crashed before any config saw them: --vocab 0 divided by zero drawing the random
  // tokens (SIGFPE).
  auto at_least = [](const char* flag, int64_t v, int64_t min) {
    if (v >= min) return true;
    std::fprintf(stderr, "zero_bench: %s: expected a value >= %lld, got %lld\n", flag,
                 static_cast<long long>(min), static_cast<long long>(v));
    return false;
  };
  if (!at_least("--dim", dim, 1) || !at_least("--layers", layers, 1) ||
      !at_least("--vocab", vocab, 1) || !at_least("--seq", seq, 1) ||
      !at_least("--global-batch", global_batch, 1) || !at_least("--micro-batch", micro, 1))
    return 2;

  World world(nullptr, nullptr);
  Comm& comm = world.comm();
  const int N = comm.size();
  const bool root = comm.rank() == 0;

  std::string dir;  // the shared temporary directory, once the ranks have made it
  const std::string yaml = R"(
model: {layer_pattern: LLLS, linear_attention: {chunk_size: 64}}
train: {steps: 1000, eval_every: 0, eval_batches: 1}
optim: {lr: 1.0e-3, warmup_steps: 1}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
  auto config = [&](int stage) {
    const std::vector<std::string> sets = {
        "model.vocab_size=" + std::to_string(vocab),
        "model.dim=" + std::to_string(dim),
        "model.n_layers=" + std::to_string(layers),
        "model.n_heads=" + std::to_string(heads),
        "model.n_kv_heads=" + std::to_string(kv_heads),
        "model.ffn_dim=" + std::to_string(ffn),
        "model.layer_pattern=" + pattern,
        "data.train=" + dir + "/train",
        "data.seq_len=" + std::to_string(seq),
        "train.global_batch=" + std::to_string(global_batch),
        "train.micro_batch=" + std::to_string(micro),
        "train.run_dir=" + dir + "/run",
        "train.eval_every=0",
        "checkpoint.resume=never",
        "parallel.dp=" + std::to_string(N),
        "parallel.zero_stage=" + std::to_string(stage),
    };
    return parse_job_config(yaml, "zero_bench.yaml", sets);
  };
  // The model shape (a --dim the heads do not divide, say) and the batch against the ranks,
  // checked by the config on every rank before any file is written: the same answer on every
  // rank, so each ends with exit 2 (it was exit 1 from stage 0's Trainer, the temporary
  // directory left behind).
  try {
    config(0);
  } catch (const std::exception& e) {
    if (root) std::fprintf(stderr, "zero_bench: %s\n", e.what());
    return exit_code(e);
  }

  // Random tokens: the memory, volumes and speed do not depend on the text.
  dir = shared_temp_dir(comm);
  if (dir.empty()) {
    if (root) std::fprintf(stderr, "zero_bench: cannot create a temporary directory\n");
    return 1;
  }
  int ok = 1;
  if (root) {
    try {
      const int64_t windows = std::max<int64_t>(64, global_batch * 4);
      std::vector<int32_t> tokens(static_cast<size_t>(windows * seq + 1));
      RngStream rng{rng_key(7, "bench/zero_tokens"), 0};
      for (auto& t : tokens) t = static_cast<int32_t>(rng.next_below(static_cast<uint64_t>(vocab)));
      write_token_shard(dir + "/train_000000.bin", tokens, vocab < 65536 ? 1 : 2);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "zero_bench: %s\n", e.what());
      ok = 0;
    }
  }
  comm.broadcast_bytes(&ok, sizeof ok, 0);
  if (!ok) return 1;

  // Sizes of the model's units, padded as ZeroEngine pads them (per unit, to a multiple of N).
  int64_t params = 0, psi_elems = 0, head_elems = 0, max_unit = 0, max_pair = 0;
  std::vector<int64_t> unit_padded;

  StageResult rank0[4], maxr[4];
  auto& tracker = MemoryTracker::instance();
  for (int stage = 0; stage < 4; ++stage) {
    StageResult r;
    const MemorySnapshot before = tracker.snapshot();
    try {
      Trainer t(config(stage), &comm);
      if (stage == 0) {
        params = t.model().num_parameters();
        for (auto& u : t.model().units()) unit_padded.push_back((u.numel() + N - 1) / N * N);
        for (size_t u = 0; u < unit_padded.size(); ++u) {
          psi_elems += unit_padded[u];
          max_unit = std::max(max_unit, unit_padded[u]);
          if (u + 1 < unit_padded.size())
            max_pair = std::max(max_pair, unit_padded[u] + unit_padded[u + 1]);
        }
        head_elems = unit_padded.back();
      }
      t.train_step();  // warm-up: buffers allocated, first-touch done
      tracker.reset_peaks();
      const MemorySnapshot start = tracker.snapshot();
      t.mesh().dp_comm().reset_stats();
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < steps; ++i) t.train_step();
      r.ms = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3 /
             static_cast<double>(steps);
      const MemorySnapshot end = tracker.snapshot();
      for (int c = 0; c < kNumMemCategories; ++c) {
        r.peak[c] = end.peak[c] - before.current[c];
        r.persistent[c] = start.current[c] - before.current[c];
      }
      r.total_peak = end.total_peak - before.total_current;
      const CommStats& s = t.mesh().dp_comm().stats();
      r.ar = s[CommOp::all_reduce].bytes / steps;
      r.rs = s[CommOp::reduce_scatter].bytes / steps;
      r.ag = s[CommOp::all_gather].bytes / steps;
    } catch (const std::exception& e) {
      // Only this rank may have failed: end the job rather than leave the others waiting (exit 2
      // for bad input).
      std::fprintf(stderr, "zero_bench: rank %d, stage %d: %s\n", comm.rank(), stage, e.what());
      world.abort(exit_code(e));
    }
    const MemorySnapshot after = tracker.snapshot();
    for (int c = 0; c < kNumMemCategories; ++c)
      r.leak += std::llabs(after.current[c] - before.current[c]);
    rank0[stage] = r;  // this rank's; rank 0 prints its own
    auto packed = pack(r);
    comm.all_reduce_max_int64(packed.data(), kPacked);
    double ms = r.ms;
    comm.all_reduce_max_double(&ms, 1);
    maxr[stage] = unpack(packed, ms);
  }
  comm.barrier();
  if (root && !keep_data) std::filesystem::remove_all(dir);
  if (!root) return 0;

  const int64_t psi = psi_elems * 4;  // padded parameter bytes
  const int64_t m = global_batch / N / micro;
  std::printf(
      "zero_bench: %lld params (dim %lld, %lld layers %s, heads %lld/%lld, ffn %lld, vocab %lld), "
      "%d ranks, global batch %lld x %lld tokens, micro-batch %lld (%lld per rank per step), "
      "%lld timed steps after 1 warm-up, %s\n",
      static_cast<long long>(params), static_cast<long long>(dim), static_cast<long long>(layers),
      pattern.c_str(), static_cast<long long>(heads), static_cast<long long>(kv_heads),
      static_cast<long long>(ffn), static_cast<long long>(vocab), N,
      static_cast<long long>(global_batch), static_cast<long long>(seq),
      static_cast<long long>(micro), static_cast<long long>(m), static_cast<long long>(steps),
      comm.backend());
  std::printf(
      "Psi = %lld padded elements = %.2f MiB fp32 (%zu units; largest %.2f MiB, head %.2f MiB)\n\n",
      static_cast<long long>(psi_elems), psi / kMiB, unit_padded.size(), max_unit * 4 / kMiB,
      head_elems * 4 / kMiB);

  // Table 1: peaks, communication, time.
  std::printf(
      "Peak MiB per rank over the timed steps (row 'r0' = rank 0, 'max' = max over ranks); dp MiB "
      "per step\n");
  std::printf("%-5s %-4s %5s | %8s %8s %8s %8s %8s %8s | %8s %6s | %8s %8s %8s %7s %7s | %9s\n",
              "stage", "row", "ranks", "params", "grads", "optim", "activ", "comm", "total",
              "model st", "vs s0", "all_red", "red_sct", "all_gth", "x 2Psi", "expect", "ms/step");
  const double psi_d = static_cast<double>(psi);
  for (int stage = 0; stage < 4; ++stage) {
    double expect = 1.0;
    if (stage == 2) expect = (static_cast<double>(m) + 1) / 2;
    if (stage == 3) expect = static_cast<double>(m) * (3 * psi_d - 4.0 * head_elems) / (2 * psi_d);
    for (int row = 0; row < (N > 1 ? 2 : 1); ++row) {
      const StageResult& r = row == 0 ? rank0[stage] : maxr[stage];
      const StageResult& s0 = row == 0 ? rank0[0] : maxr[0];
      const double ms_state = static_cast<double>(model_states(r.peak));
      std::printf(
          "%-5d %-4s %5d | %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f | %8.2f %5.2fx | %8.2f %8.2f %8.2f "
          "%6.3fx %6.3fx | %9.1f\n",
          stage, row == 0 ? "r0" : "max", N, at(r.peak, MemCategory::params) / kMiB,
          at(r.peak, MemCategory::grads) / kMiB, at(r.peak, MemCategory::optimizer) / kMiB,
          at(r.peak, MemCategory::activations) / kMiB, at(r.peak, MemCategory::comm) / kMiB,
          r.total_peak / kMiB, ms_state / kMiB,
          ms_state / static_cast<double>(model_states(s0.peak)), r.ar / kMiB, r.rs / kMiB,
          r.ag / kMiB, static_cast<double>(r.ar + r.rs + r.ag) / (2 * psi_d), expect, r.ms);
    }
  }

  // Table 2: the paper's model states per rank against the measured ones (max over ranks).
  // fp32 everywhere: params 4 Psi', grads 4 Psi', Adam 8 Psi' bytes (Psi' = padded elements).
  std::printf(
      "\nModel states per rank, MiB: ZeRO paper (fp32: params 4, grads 4, Adam 8 bytes/element) vs "
      "measured (max over ranks)\n");
  std::printf(
      "  paper: stage 0: 4+4+8 | 1: 4+4+8/N | 2: 4+(4+8)/N | 3: (4+4+8)/N, times Psi'; +live = "
      "what the design keeps\n");
  std::printf(
      "  transiently beyond that: stage 2 the full grads of <= 2 adjacent units (one in backward, "
      "one being\n");
  std::printf(
      "  reduce-scattered), stage 3 that plus the params of <= 2 adjacent gathered units (current "
      "+ prefetched)\n");
  std::printf("%-5s | %7s %7s %7s %7s %7s %8s | %7s %7s %7s %7s | %7s %7s %7s %7s %6s\n", "stage",
              "P", "G", "O", "paper", "+live", "=expect", "P", "G", "O", "persist", "P", "G", "O",
              "peak", "/exp");
  const double P = psi_d, n = N;
  for (int stage = 0; stage < 4; ++stage) {
    double pp = P, pg = P, po = 2 * P, live = 0;
    if (stage >= 1) po = 2 * P / n;
    if (stage >= 2) {
      pg = P / n;
      live += 4.0 * max_pair;  // full grads
    }
    if (stage == 3) {
      pp = P / n;
      live += 4.0 * max_pair;  // gathered params
    }
    const double paper = pp + pg + po, expect = paper + live;
    const StageResult& r = maxr[stage];
    std::printf(
        "%-5d | %7.2f %7.2f %7.2f %7.2f %7.2f %8.2f | %7.2f %7.2f %7.2f %7.2f | %7.2f %7.2f %7.2f "
        "%7.2f %5.2fx\n",
        stage, pp / kMiB, pg / kMiB, po / kMiB, paper / kMiB, live / kMiB, expect / kMiB,
        at(r.persistent, MemCategory::params) / kMiB, at(r.persistent, MemCategory::grads) / kMiB,
        at(r.persistent, MemCategory::optimizer) / kMiB, model_states(r.persistent) / kMiB,
        at(r.peak, MemCategory::params) / kMiB, at(r.peak, MemCategory::grads) / kMiB,
        at(r.peak, MemCategory::optimizer) / kMiB, model_states(r.peak) / kMiB,
        static_cast<double>(model_states(r.peak)) / expect);
  }
  bool leaked = false;
  for (int stage = 0; stage < 4; ++stage)
    if (maxr[stage].leak != 0) {
      leaked = true;
      std::printf(
          "WARNING: stage %d: tracker's current values did not return to their pre-Trainer values "
          "after "
          "it was destroyed (%lld bytes off on some rank)\n",
          stage, static_cast<long long>(maxr[stage].leak));
    }
  if (!leaked)
    std::printf(
        "teardown: every stage's Trainer released all tracked memory (current values back to "
        "before it)\n");
  return 0;
}

}  // namespace

// Any other error is its message and exit 2, not an uncaught exception (SIGABRT).
int main(int argc, char** argv) {
  return strata::bench_main("zero_bench", [&] { return run_bench(argc, argv); });
}
