// Vocabulary-parallelism benchmark: a large-vocabulary model trained under pp ranks with the
// embedding and the LM head on the first and last stage (parallel.vocab_parallel: false) and
// split by rows over every pp rank (true: EMBED_F, S, T, EMBED_B in the schedule), its
// collectives overlapping other micro-batches' work ("on", parallel.vocab_overlap: true) or each
// waited for where it is posted ("blk", false), under 1f1b and zb-h1; per-stage compute and memory
// balance (the goal: max/min <= 1.10 with vocabulary parallelism), tokens/s, the vocabulary
// collectives' bytes against their analytic count; then one process (pp = 1) with a 131072-token
// vocabulary: the tiled head's activation peak against the previous head's [1024 x V] logits
// buffer.
//
//   cmake -S . -B build-hf -G Ninja -DCMAKE_BUILD_TYPE=Release && ninja -C build-hf vocab_bench
//   (any build directory will do; build-hf is the one these runs were made with)
//   export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
//   export OMP_WAIT_POLICY=PASSIVE OMPI_MCA_mpi_yield_when_idle=1
//   mpirun --oversubscribe -np 4 build-hf/bench/vocab_bench      (tables 1-4 at pp=4, then 5)
//   build-hf/bench/vocab_bench                                     (one process: table 5 only)
//   mpirun --oversubscribe -np 2 build-hf/bench/vocab_bench --pp 2 --skip-head
//       (pp=2 with a core per rank on a 2-core machine: no oversubscription in the numbers)
//
// Options (defaults in brackets): --vocab [65536] --dim [256] --layers [8] --pp [4]
//   --micro-batches [8] (m, per step) --seq [128] --micro-batch [1] --steps [2] (timed, after
//   1 warm-up) --repeat [2] (rounds, best kept) --heads [dim/64] --kv-heads [heads/2]
//   --ffn [8/3 dim, to 16] --pattern [LLLS] --schedules [1f1b,zb-h1] --no-blocking (no "blk" rows)
//   table 5: --head-vocab [131072] --head-dim [64] --head-layers [2] --head-seq [256]
//   --head-micro-batch [4]; --skip-pipeline (no tables 1-4) --skip-head (no table 5) --keep-data
//
// No data files are needed: rank 0 writes random token shards to a temporary directory and
// broadcasts its path. Every configuration gets a fresh Trainer on a communicator of the first
// pp world ranks (Comm::split): one warm-up step, then the MemoryTracker peaks and the
// vocabulary communicator's counters are taken and --steps steps are timed, a barrier before
// each. Every configuration runs --repeat times, round after round, and keeps its round with the
// shortest step (max over ranks of train_step): a burst of other work on the shared machine then
// spoils one round of each configuration, not every round of one. Ranks outside a run sleep
// (polling a receive every 5 ms) until rank 0 releases them. Numbers are per optimizer step
// (mean over the timed steps); per-rank lists read "r0/r1/..." by pipeline rank (dp = 1); every
// run here has one stage per rank, so "stage s" is "rank s". "vocab" off: the embedding lives on
// stage 0 and the LM head + loss on the last stage (placed by FLOPs: the head's stage gets fewer
// blocks); on: every rank holds V/pp rows of both and the blocks are split evenly.
//
// How to read the tables:
//
// Table 1, per-stage compute (ms per step):
//   busy ms      per rank, executor compute_s + vocab_s: the time in F/B/I/W passes plus the time
//                in the S, T, EMBED_F, EMBED_B passes (their collectives' waits included, so a
//                rank that reaches a collective early counts its wait there as busy: with vocab on
//                this column understates the imbalance of the passes themselves).
//   max/mn       max over ranks / min over ranks of busy (printed to 3 decimals);
//                goal: with vocab on, <= 1.10 (met/NO).
//   vocab ms     the vocab_s part of busy, per rank (0 with vocab off).
//   vwait ms     per rank, executor vocab_wait_s: time blocked on a vocabulary collective's result
//                (stage 0's input before its F, the last stage's dL/dhn before its B or I, the
//                step's end); not in busy. "blk" rows wait inside the passes instead (vocab ms).
//   F-B m/m      max/min of compute_s alone (the blocks' passes, and with vocab off the head).
//   plan m/m     the trainer's plan: max/min of the simulated busy time per rank
//                (PipelinePlan::sim.busy, per-stage FLOP costs, collectives' waits excluded).
//   4 ranks on 2 cores: ranks computing at the same time share a core, so their passes run
//   slower in wall time; when every rank is slowed alike the ratios survive, but with vocab off
//   the head's rank computes mostly alone (at full speed) while the others' short passes share
//   the cores, so the measured max/mn comes out below the plan's. Run at -np 2 --pp 2 for a core
//   per rank.
//
// Table 2, per-stage memory (MiB, MemoryTracker of each rank's process):
//   total peak   the peak of all tracked bytes over the timed steps (parameters, gradients,
//                optimizer states, activations, message buffers, ...).
//   p+g+o        params + grads + optimizer peaks: the model state this rank holds.
//   act          the activations peak over the timed steps above its value at their start (the
//                saved activations of in-flight micro-batches, the head's tiles, the kept hn).
//   max/mn after each: max/min over ranks; goal: with vocab on, total peak max/min <= 1.10.
//   Activations are unbalanced by the schedule itself (1f1b: rank r holds pp - r micro-batches
//   in flight), whatever the vocabulary does.
//
// Table 3, tokens/s (global batch m x micro-batch x seq tokens):
//   step ms      Trainer::train_step, max over ranks (optimizer step, loss and norm reductions
//                included); tok/s: tokens / step, "vs off" the ratio to the same schedule with
//                vocab off. This is the wall clock: 4 ranks on 2 cores share them.
//   exec ms      per rank, PipelineExecutor wall_s (the whole run_step).
//   busy ms      per rank, compute_s + vocab_s (as table 1); cpu ms: process CPU time over
//                train_step per rank (MPI's polling while waiting counts as CPU).
//   util         sum busy / (ranks x max exec ms): the share of the ranks' executor time spent
//                in passes.
//   replay ms    the schedule replayed through simulate_schedule with the measured pass times
//                as costs (each stage's F, B, I, W: its rank's forward_s / m, ...; the vocabulary
//                passes, whose simulator cost is one per pass type for all ranks: the smallest
//                vocab_s over ranks / m, split between S, T, EMBED_F, EMBED_B in the plan's cost
//                ratios), messages free: the step the measured passes would take with a core per
//                rank. busy t/s: tokens / replay ms, "vs off" as above. Pass times measured
//                under contention stay in the costs, and the vocabulary costs still hold the
//                least-waiting rank's waits (an upper bound).
//
// Table 4, bytes of the vocabulary collectives per step, per rank (vocab on only):
//   measured     Trainer::vocab_comm()->stats() over the timed steps / steps: all_reduce and
//                broadcast (calls, bytes), and the total over every op; the byte convention of
//                parallel/comm_stats.h (all-reduce of n floats counts 2n x 4 bytes, broadcast n x
//                4); every rank counts the same volume.
//   analytic     m x per micro-batch (N = micro-batch x seq tokens, D = dim): EMBED_F all-reduce
//                2 N D 4; S broadcast of hn N D 4 + one log-domain all-reduce of the statistics
//                2 N (2D+3) 4; EMBED_B broadcast N D 4. all_reduce: 2m calls, 4 m (6ND + 6N)
//                bytes; broadcast: 2m calls, 4 m 2ND bytes; total 4 m (8ND + 6N).
//   match        "exact" when every rank's measured calls and bytes equal the analytic ones.
//
// Table 5, pp = 1 (one process, vocab off), one train_step on the small model (--head-*): the
//   head is tiled (models/model.cpp kHeadTiles: logits one 64 x 2048 tile at a time).
//   step act     MemoryTracker's activations peak over that train_step (the blocks' saved
//                activations and the head), MiB; total peak: all tracked bytes.
//   head act     the activations peak of one Model::head_loss (forward + backward) alone on the
//                step's N tokens, MiB; expected: what it holds at its peak, 4 (4ND + 5N + 64 x
//                2048) bytes (hn, dhn [N, D]; inv, lse, the row maxima [N]; the S statistics
//                N (2D + 2); one tile).
//   before       the previous head's logits buffer, min(N, 1024) x V x 4 bytes (512 MiB at
//                V = 131072), and how many times the step's activation peak (before/act) and the
//                head's alone (before/head) fit in it.
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "bench/bench_args.h"
#include "bench/bench_ranks.h"
#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "launch/data.h"
#include "launch/job_config.h"
#include "launch/pipeline_plan.h"
#include "launch/trainer.h"
#include "parallel/comm_stats.h"
#include "parallel/schedule_sim.h"
#include "parallel/world.h"

using namespace strata;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGoal = 1.10;
constexpr int64_t kTileRows = 64, kTileCols = 2048, kOldHeadRows = 1024;

struct Options {
  int64_t vocab = 65536, dim = 256, layers = 8, pp = 4, m = 8, seq = 128, micro = 1;
  int64_t steps = 2, repeat = 2, heads = 0, kv_heads = 0, ffn = 0;
  std::string pattern = "LLLS";
  std::vector<std::string> schedules = {"1f1b", "zb-h1"};
  int64_t head_vocab = 131072, head_dim = 64, head_layers = 2, head_seq = 256, head_micro = 4;
  bool skip_pipeline = false, skip_head = false, keep_data = false, blocking = true;
};

// The vocabulary variants of a schedule: off, on (overlapping collectives), on and blocking.
enum class Vocab { off, on, blocking };
const char* vocab_name(Vocab v) { return v == Vocab::off ? "off" : v == Vocab::on ? "on" : "blk"; }

// What one rank measured, per timed step (means). Doubles only: gathered as a flat array.
struct RankMeasure {
  double pp_rank = 0;
  double compute = 0, vocab = 0, vocab_wait = 0;  // executor compute_s, vocab_s, vocab_wait_s
  double forward = 0, backward = 0, backward_input = 0, backward_weight = 0;
  double exec_wall = 0, step = 0, cpu = 0;
  double total_peak = 0, state_peak = 0, act_peak = 0;  // bytes
  double ar_calls = 0, ar_bytes = 0, bc_calls = 0, bc_bytes = 0, all_calls = 0, all_bytes = 0;
  double busy() const { return compute + vocab; }
};
static_assert(std::is_trivially_copyable_v<RankMeasure>);
constexpr size_t kFields = sizeof(RankMeasure) / sizeof(double);
static_assert(kFields * sizeof(double) == sizeof(RankMeasure));

// Every rank's measure on every rank of `comm`, by rank (own slot filled, then a sum).
std::vector<RankMeasure> gather_all(Comm& comm, const RankMeasure& mine) {
  std::vector<double> flat(static_cast<size_t>(comm.size()) * kFields, 0.0);
  std::memcpy(flat.data() + static_cast<size_t>(comm.rank()) * kFields, &mine, sizeof mine);
  comm.all_reduce_sum_double(flat.data(), static_cast<int64_t>(flat.size()));
  std::vector<RankMeasure> out(static_cast<size_t>(comm.size()));
  for (size_t r = 0; r < out.size(); ++r)
    std::memcpy(static_cast<void*>(&out[r]), flat.data() + r * kFields, sizeof(RankMeasure));
  std::sort(out.begin(), out.end(),
            [](const RankMeasure& a, const RankMeasure& b) { return a.pp_rank < b.pp_rank; });
  return out;
}

// One warm-up step, then `steps` timed ones; `comm` spans the Trainer's ranks.
RankMeasure measure_steps(Trainer& t, Comm& comm, int64_t steps) {
  t.train_step();  // buffers allocated, optimizer states created, first touch done
  MemoryTracker& mt = MemoryTracker::instance();
  const auto cat = [](MemCategory c) { return static_cast<size_t>(c); };
  comm.barrier();
  mt.reset_peaks();
  const int64_t act0 = mt.snapshot().current[cat(MemCategory::activations)];
  const CommStats c0 = t.vocab_comm() ? t.vocab_comm()->stats() : CommStats{};
  RankMeasure m;
  m.pp_rank = t.mesh().pp_rank();
  for (int64_t i = 0; i < steps; ++i) {
    comm.barrier();
    const double cpu0 = bench::process_cpu_seconds();
    const StepResult r = t.train_step();
    m.cpu += bench::process_cpu_seconds() - cpu0;
    m.step += r.seconds;
    const PipelineStepStats& s = t.executor().last_step();
    m.compute += s.compute_s;
    m.vocab += s.vocab_s;
    m.vocab_wait += s.vocab_wait_s;
    m.forward += s.forward_s;
    m.backward += s.backward_s;
    m.backward_input += s.backward_input_s;
    m.backward_weight += s.backward_weight_s;
    m.exec_wall += s.wall_s;
  }
  const MemorySnapshot snap = mt.snapshot();
  m.total_peak = static_cast<double>(snap.total_peak);
  m.state_peak =
      static_cast<double>(snap.peak[cat(MemCategory::params)] + snap.peak[cat(MemCategory::grads)] +
                          snap.peak[cat(MemCategory::optimizer)]);
  m.act_peak = static_cast<double>(snap.peak[cat(MemCategory::activations)] - act0);
  if (t.vocab_comm()) {
    const CommStats& c1 = t.vocab_comm()->stats();
    m.ar_calls = static_cast<double>(c1[CommOp::all_reduce].calls - c0[CommOp::all_reduce].calls);
    m.ar_bytes = static_cast<double>(c1[CommOp::all_reduce].bytes - c0[CommOp::all_reduce].bytes);
    m.bc_calls = static_cast<double>(c1[CommOp::broadcast].calls - c0[CommOp::broadcast].calls);
    m.bc_bytes = static_cast<double>(c1[CommOp::broadcast].bytes - c0[CommOp::broadcast].bytes);
    m.all_calls = static_cast<double>(c1.total_calls() - c0.total_calls());
    m.all_bytes = static_cast<double>(c1.total_bytes() - c0.total_bytes());
  }
  const double n = static_cast<double>(steps);
  for (double* f : {&m.compute, &m.vocab, &m.vocab_wait, &m.forward, &m.backward, &m.backward_input,
                    &m.backward_weight, &m.exec_wall, &m.step, &m.cpu, &m.ar_calls, &m.ar_bytes,
                    &m.bc_calls, &m.bc_bytes, &m.all_calls, &m.all_bytes})
    *f /= n;
  return m;
}

// "a/b/c" of values x scale in `fmt`.
std::string slashed(const std::vector<double>& v, double scale, const char* fmt) {
  std::string out;
  char buf[64];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, fmt, v[i] * scale);
    if (i) out += '/';
    out += buf;
  }
  return out;
}

std::vector<double> column(const std::vector<RankMeasure>& ranks,
                           double (*get)(const RankMeasure&)) {
  std::vector<double> v;
  for (const RankMeasure& r : ranks) v.push_back(get(r));
  return v;
}

double max_over_min(const std::vector<double>& v) {
  if (v.empty()) return 0;
  const auto [mn, mx] = std::minmax_element(v.begin(), v.end());
  return *mn > 0 ? *mx / *mn : std::numeric_limits<double>::infinity();
}

double largest(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// The schedule replayed with the measured pass times as costs, messages free.
SimResult replay_measured(const PipelinePlan& plan, const std::vector<RankMeasure>& ranks) {
  SimCosts c = plan.costs;
  c.send = c.recv = c.latency = c.reduce_grad = 0;
  const size_t S = plan.stages.size();
  c.stage_forward.assign(S, 0);
  c.stage_backward.assign(S, 0);
  c.stage_backward_input.assign(S, 0);
  c.stage_backward_weight.assign(S, 0);
  const double m = plan.micro_batches;
  for (const RankMeasure& r : ranks) {
    const std::vector<int> mine = plan.stages_of_rank(static_cast<int>(r.pp_rank));
    const double k = static_cast<double>(mine.size());  // split evenly (one stage here)
    for (int s : mine) {
      c.stage_forward[static_cast<size_t>(s)] = r.forward / m / k;
      c.stage_backward[static_cast<size_t>(s)] = r.backward / m / k;
      c.stage_backward_input[static_cast<size_t>(s)] = r.backward_input / m / k;
      c.stage_backward_weight[static_cast<size_t>(s)] = r.backward_weight / m / k;
    }
  }
  if (plan.vocab_parallel) {
    double least = std::numeric_limits<double>::infinity();
    for (const RankMeasure& r : ranks) least = std::min(least, r.vocab / m);
    const double sum = c.vocab_s + c.vocab_t + c.embed_f + c.embed_b;
    auto part = [&](double plan_cost) { return sum > 0 ? least * plan_cost / sum : least / 4; };
    const double s = part(c.vocab_s), t = part(c.vocab_t), f = part(c.embed_f), b = part(c.embed_b);
    c.vocab_s = s;
    c.vocab_t = t;
    c.embed_f = f;
    c.embed_b = b;
  }
  return simulate_schedule(plan.schedule, c);
}

struct Row {
  std::string schedule;
  Vocab vocab = Vocab::off;
  PipelinePlan plan;
  std::vector<RankMeasure> ranks;  // by pp rank
  double step() const {
    double s = 0;
    for (const RankMeasure& r : ranks) s = std::max(s, r.step);
    return s;
  }
};

struct HeadRow {
  double step_s = 0, step_act = 0, step_total = 0, head_act = 0, loss = 0;
};

int64_t ffn_for(int64_t dim) { return (dim * 8 / 3 + 15) / 16 * 16; }

// The exit code of an error: a StrataError's own (2 for bad input), else 1.
int exit_code(const std::exception& e) {
  const auto* s = dynamic_cast<const StrataError*>(&e);
  return s ? static_cast<int>(s->code()) : 1;
}

int run_bench(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "vocab_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto num = [&] { return bench_number("vocab_bench", a, value()); };
    if (a == "--vocab")
      o.vocab = num();
    else if (a == "--dim")
      o.dim = num();
    else if (a == "--layers")
      o.layers = num();
    else if (a == "--pp")
      o.pp = num();
    else if (a == "--micro-batches")
      o.m = num();
    else if (a == "--seq")
      o.seq = num();
    else if (a == "--micro-batch")
      o.micro = num();
    else if (a == "--steps")
      o.steps = num();
    else if (a == "--repeat")
      o.repeat = num();
    else if (a == "--heads")
      o.heads = num();
    else if (a == "--kv-heads")
      o.kv_heads = num();
    else if (a == "--ffn")
      o.ffn = num();
    else if (a == "--pattern")
      o.pattern = value();
    else if (a == "--schedules")
      o.schedules = bench::split_list(value());
    else if (a == "--head-vocab")
      o.head_vocab = num();
    else if (a == "--head-dim")
      o.head_dim = num();
    else if (a == "--head-layers")
      o.head_layers = num();
    else if (a == "--head-seq")
      o.head_seq = num();
    else if (a == "--head-micro-batch")
      o.head_micro = num();
    else if (a == "--skip-pipeline")
      o.skip_pipeline = true;
    else if (a == "--skip-head")
      o.skip_head = true;
    else if (a == "--keep-data")
      o.keep_data = true;
    else if (a == "--no-blocking")
      o.blocking = false;
    else {
      std::fprintf(stderr, "vocab_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.heads <= 0) o.heads = std::max<int64_t>(1, o.dim / 64);
  if (o.kv_heads <= 0) o.kv_heads = o.heads % 2 == 0 ? o.heads / 2 : o.heads;
  if (o.ffn <= 0) o.ffn = ffn_for(o.dim);
  o.steps = std::max<int64_t>(1, o.steps);
  o.repeat = std::max<int64_t>(1, o.repeat);
  // Sizes that crashed before any config saw them: --vocab 0 and --head-vocab 0 divided by zero
  // drawing the random tokens (SIGFPE).
  auto at_least = [](const char* flag, int64_t v, int64_t min) {
    if (v >= min) return true;
    std::fprintf(stderr, "vocab_bench: %s: expected a value >= %lld, got %lld\n", flag,
                 static_cast<long long>(min), static_cast<long long>(v));
    return false;
  };
  if (!at_least("--vocab", o.vocab, 1) || !at_least("--dim", o.dim, 1) ||
      !at_least("--layers", o.layers, 1) || !at_least("--pp", o.pp, 1) ||
      !at_least("--micro-batches", o.m, 1) || !at_least("--seq", o.seq, 1) ||
      !at_least("--micro-batch", o.micro, 1) || !at_least("--head-vocab", o.head_vocab, 1) ||
      !at_least("--head-dim", o.head_dim, 1) || !at_least("--head-layers", o.head_layers, 1) ||
      !at_least("--head-seq", o.head_seq, 1) || !at_least("--head-micro-batch", o.head_micro, 1))
    return 2;

  std::string dir;  // the shared temporary directory, once the ranks have made it
  const std::string yaml = R"(
model: {layer_pattern: LLLS, linear_attention: {chunk_size: 64}}
train: {steps: 1000, eval_every: 0, eval_batches: 1}
optim: {lr: 1.0e-3, warmup_steps: 1}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
  struct Shape {
    int64_t vocab, dim, layers, heads, kv_heads, ffn, seq, micro, global_batch, pp;
    std::string data, run;  // under the shared temporary directory
  };
  auto config = [&](const Shape& s, const std::string& schedule, Vocab vocab) {
    const std::vector<std::string> sets = {
        "model.vocab_size=" + std::to_string(s.vocab),
        "model.dim=" + std::to_string(s.dim),
        "model.n_layers=" + std::to_string(s.layers),
        "model.n_heads=" + std::to_string(s.heads),
        "model.n_kv_heads=" + std::to_string(s.kv_heads),
        "model.ffn_dim=" + std::to_string(s.ffn),
        "model.layer_pattern=" + o.pattern,
        "data.train=" + dir + "/" + s.data,
        "data.seq_len=" + std::to_string(s.seq),
        "train.global_batch=" + std::to_string(s.global_batch),
        "train.micro_batch=" + std::to_string(s.micro),
        "train.run_dir=" + dir + "/" + s.run,
        "train.eval_every=0",
        "train.collective_timeout_s=600",  // passes slowed by oversubscription
        "checkpoint.resume=never",
        "parallel.pp=" + std::to_string(s.pp),
        "parallel.schedule=" + schedule,
        std::string("parallel.vocab_parallel=") + (vocab != Vocab::off ? "true" : "false"),
        std::string("parallel.vocab_overlap=") + (vocab == Vocab::blocking ? "false" : "true"),
    };
    return parse_job_config(yaml, "vocab_bench.yaml", sets);
  };
  const Shape big{o.vocab, o.dim,   o.layers,      o.heads, o.kv_heads, o.ffn,
                  o.seq,   o.micro, o.m * o.micro, o.pp,    "pp/train", "pp"};
  const int64_t hheads = std::max<int64_t>(1, o.head_dim / 64);
  const Shape small{o.head_vocab,
                    o.head_dim,
                    o.head_layers,
                    hheads,
                    hheads % 2 == 0 ? hheads / 2 : hheads,
                    ffn_for(o.head_dim),
                    o.head_seq,
                    o.head_micro,
                    o.head_micro,
                    1,
                    "head/train",
                    "head"};

  // The model shapes (a --dim the heads do not divide, say), checked by the config on every rank
  // before MPI starts and any file is written: an error is its message and exit 2 (the pipeline
  // model's was an uncaught exception on rank 0 after every run, SIGABRT).
  config(big, "1f1b", Vocab::off);
  if (!o.skip_head) config(small, "1f1b", Vocab::off);

  World world(nullptr, nullptr);
  Comm& comm = world.comm();
  const int W = comm.size();
  const bool root = comm.rank() == 0;
  const int P = static_cast<int>(o.pp);
  const bool run_pipeline = !o.skip_pipeline && W >= P && P > 1;

  dir = bench::shared_temp_dir(comm, "strata_vocab_bench");
  if (dir.empty()) {
    if (root) std::fprintf(stderr, "vocab_bench: cannot create a temporary directory\n");
    return 1;
  }
  int ok = 1;
  if (root) {
    try {
      std::filesystem::create_directories(dir + "/pp");
      std::filesystem::create_directories(dir + "/head");
      if (run_pipeline)
        bench::write_random_shard(dir + "/pp/train_000000.bin",
                                  std::max<int64_t>(64, o.m * o.micro * 4), o.seq, o.vocab, 21,
                                  "bench/vocab_tokens");
      if (!o.skip_head)
        bench::write_random_shard(dir + "/head/train_000000.bin",
                                  std::max<int64_t>(64, o.head_micro * 4), o.head_seq, o.head_vocab,
                                  22, "bench/vocab_tokens");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vocab_bench: %s\n", e.what());
      ok = 0;
    }
  }
  comm.broadcast_bytes(&ok, sizeof ok, 0);
  if (!ok) return 1;

  auto die = [&](const std::string& what, const std::exception& e) {
    // Only this rank may have failed: end the job rather than leave the others waiting (exit 2
    // for bad input, such as a schedule the trainer refuses).
    std::fprintf(stderr, "vocab_bench: rank %d, %s: %s\n", comm.rank(), what.c_str(), e.what());
    world.abort(exit_code(e));
  };

  const std::string load0 = bench::load_average();
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };

  std::vector<Row> rows;
  for (int64_t round = 0; run_pipeline && round < o.repeat; ++round) {
    size_t index = 0;
    for (const std::string& schedule : o.schedules) {
      for (Vocab vocab : {Vocab::off, Vocab::on, Vocab::blocking}) {
        if (vocab == Vocab::blocking && !o.blocking) continue;
        Row row;
        row.schedule = schedule;
        row.vocab = vocab;
        bench::on_first_ranks(comm, P, false, [&](Comm* sub) {
          RankMeasure mine;
          const std::string what = schedule + " vocab " + vocab_name(vocab);
          try {
            Trainer t(config(big, schedule, vocab), sub);
            mine = measure_steps(t, *sub, o.steps);
            if (root) row.plan = t.pipeline_plan();
          } catch (const std::exception& e) {
            die(what, e);
          }
          row.ranks = gather_all(*sub, mine);
          if (root)
            std::fprintf(stderr, "vocab_bench: round %lld %-6s vocab %-3s step %7.1f ms (%.0f s)\n",
                         static_cast<long long>(round + 1), schedule.c_str(), vocab_name(vocab),
                         row.step() * 1e3, elapsed());
        });
        if (root) {
          if (rows.size() <= index)
            rows.push_back(std::move(row));
          else if (row.step() < rows[index].step())
            rows[index] = std::move(row);
        }
        ++index;
      }
    }
  }

  HeadRow head;
  if (!o.skip_head) {
    bench::on_first_ranks(comm, 1, true, [&](Comm*) {
      try {
        Trainer t(config(small, "1f1b", Vocab::off), nullptr);
        MemoryTracker& mt = MemoryTracker::instance();
        const size_t act = static_cast<size_t>(MemCategory::activations);
        mt.reset_peaks();
        int64_t a0 = mt.snapshot().current[act];
        const StepResult r = t.train_step();
        MemorySnapshot snap = mt.snapshot();
        head.step_s = r.seconds;
        head.step_act = static_cast<double>(snap.peak[act] - a0);
        head.step_total = static_cast<double>(snap.total_peak);
        // The head alone on the step's tokens: a random input, untracked buffers of the caller.
        const int64_t N = small.micro * small.seq, D = small.dim;
        std::vector<float> h(static_cast<size_t>(N * D)), dh(h.size());
        std::vector<int32_t> targets(static_cast<size_t>(N));
        RngStream rng{rng_key(23, "bench/vocab_head"), 0};
        for (float& x : h) x = static_cast<float>(rng.next_below(2001)) * 1e-3f - 1.f;
        for (int32_t& y : targets)
          y = static_cast<int32_t>(rng.next_below(static_cast<uint64_t>(small.vocab)));
        mt.reset_peaks();
        a0 = mt.snapshot().current[act];
        head.loss = t.model().head_loss(h.data(), targets.data(), N, 1.f / static_cast<float>(N),
                                        dh.data()) /
                    static_cast<double>(N);
        head.head_act = static_cast<double>(mt.snapshot().peak[act] - a0);
      } catch (const std::exception& e) {
        die("pp=1 head", e);
      }
      std::fprintf(stderr, "vocab_bench: pp=1 V=%lld step %.1f ms (%.0f s)\n",
                   static_cast<long long>(small.vocab), head.step_s * 1e3, elapsed());
    });
  }
  comm.barrier();
  if (root && !o.keep_data) std::filesystem::remove_all(dir);
  if (!root) return 0;

  int64_t params = 0;
  {
    const JobConfig c = config(big, "1f1b", Vocab::off);
    const Model layout(c.model, std::vector<bool>(static_cast<size_t>(o.layers + 2), false));
    for (const ParamUnit& u : layout.units()) params += u.numel();
  }
  std::printf(
      "vocab_bench: %lld params (vocab %lld, dim %lld, %lld layers %s, heads %lld/%lld, ffn "
      "%lld), pp %d, m %lld, seq %lld, micro-batch %lld, %lld timed steps after 1 warm-up (best "
      "of %lld rounds), %d world ranks (%s), OMP_NUM_THREADS=%s, %u hardware threads, %.0f s "
      "total\n",
      static_cast<long long>(params), static_cast<long long>(o.vocab),
      static_cast<long long>(o.dim), static_cast<long long>(o.layers), o.pattern.c_str(),
      static_cast<long long>(o.heads), static_cast<long long>(o.kv_heads),
      static_cast<long long>(o.ffn), P, static_cast<long long>(o.m), static_cast<long long>(o.seq),
      static_cast<long long>(o.micro), static_cast<long long>(o.steps),
      static_cast<long long>(o.repeat), W, comm.backend(),
      std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "unset",
      std::thread::hardware_concurrency(), elapsed());
  std::printf("load average (1, 5, 15 min) at start %s, at end %s\n", load0.c_str(),
              bench::load_average().c_str());

  const auto goal = [](double ratio) { return ratio <= kGoal ? "met" : "NO"; };
  if (!run_pipeline) {
    std::printf("\n(tables 1-4 skipped: %s)\n",
                o.skip_pipeline ? "--skip-pipeline" : "they need at least --pp (> 1) world ranks");
  } else {
    std::printf(
        "\nTable 1: per-stage compute, ms per step, per rank r0/r1/...; busy = executor "
        "compute_s + vocab_s; goal with vocab on: busy max/min <= %.2f\n",
        kGoal);
    std::printf("%-6s %-5s | %-31s %6s %-4s | %-27s | %-27s | %7s %7s | %s\n", "sched", "vocab",
                "busy ms per rank", "max/mn", "goal", "vocab ms per rank", "vwait ms per rank",
                "F-B m/m", "plan m/m", "placement (blocks per stage)");
    for (const Row& r : rows) {
      const auto busy = column(r.ranks, [](const RankMeasure& k) { return k.busy(); });
      const auto voc = column(r.ranks, [](const RankMeasure& k) { return k.vocab; });
      const auto vwait = column(r.ranks, [](const RankMeasure& k) { return k.vocab_wait; });
      const bool on = r.vocab != Vocab::off;
      const auto cmp = column(r.ranks, [](const RankMeasure& k) { return k.compute; });
      std::string blocks;
      for (const StagePlan& s : r.plan.stages) {
        if (!blocks.empty()) blocks += ',';
        blocks += std::to_string(s.end_block(o.layers) - s.first_block());
        if (s.has_embedding() && !on) blocks += "+E";
        if (s.end_unit == o.layers + 2 && !on) blocks += "+H";
      }
      std::printf("%-6s %-5s | %-31s %6.3f %-4s | %-27s | %-27s | %7.2f %7.2f | %s\n",
                  r.schedule.c_str(), vocab_name(r.vocab), slashed(busy, 1e3, "%.1f").c_str(),
                  max_over_min(busy), on ? goal(max_over_min(busy)) : "-",
                  slashed(voc, 1e3, "%.1f").c_str(), slashed(vwait, 1e3, "%.1f").c_str(),
                  max_over_min(cmp), max_over_min(r.plan.sim.busy), blocks.c_str());
    }
    std::printf(
        "  (F-B m/m: max/min of compute_s alone; plan m/m: the plan's simulated busy per rank; "
        "placement: +E embedding, +H LM head + loss on that stage)\n");

    std::printf(
        "\nTable 2: per-stage memory, MiB, per rank r0/r1/...; goal with vocab on: total peak "
        "max/min <= %.2f\n",
        kGoal);
    std::printf("%-6s %-5s | %-27s %6s %-4s | %-27s %6s | %-23s %6s\n", "sched", "vocab",
                "total peak MiB per rank", "max/mn", "goal", "p+g+o MiB per rank", "max/mn",
                "act MiB per rank", "max/mn");
    for (const Row& r : rows) {
      const auto tot = column(r.ranks, [](const RankMeasure& k) { return k.total_peak; });
      const auto st = column(r.ranks, [](const RankMeasure& k) { return k.state_peak; });
      const auto act = column(r.ranks, [](const RankMeasure& k) { return k.act_peak; });
      std::printf("%-6s %-5s | %-27s %6.3f %-4s | %-27s %6.2f | %-23s %6.2f\n", r.schedule.c_str(),
                  vocab_name(r.vocab), slashed(tot, 1 / kMiB, "%.1f").c_str(), max_over_min(tot),
                  r.vocab != Vocab::off ? goal(max_over_min(tot)) : "-",
                  slashed(st, 1 / kMiB, "%.1f").c_str(), max_over_min(st),
                  slashed(act, 1 / kMiB, "%.2f").c_str(), max_over_min(act));
    }

    const double tokens = static_cast<double>(o.m * o.micro * o.seq);
    std::printf(
        "\nTable 3: tokens/s, global batch %lld x %lld tokens; ms per step, per rank "
        "r0/r1/...; wall on %u hardware threads, replay = one core per rank\n",
        static_cast<long long>(o.m * o.micro), static_cast<long long>(o.seq),
        std::thread::hardware_concurrency());
    std::printf("%-6s %-5s | %8s %8s %6s | %-31s %-31s %-31s %5s | %8s %9s %6s\n", "sched", "vocab",
                "step ms", "tok/s", "vs off", "exec ms per rank", "busy ms per rank",
                "cpu ms per rank", "util", "replay", "busy t/s", "vs off");
    double off_wall = 0, off_busy = 0;
    for (const Row& r : rows) {
      const auto exec = column(r.ranks, [](const RankMeasure& k) { return k.exec_wall; });
      const auto busy = column(r.ranks, [](const RankMeasure& k) { return k.busy(); });
      const auto cpu = column(r.ranks, [](const RankMeasure& k) { return k.cpu; });
      double sum_busy = 0;
      for (double b : busy) sum_busy += b;
      const double tok_s = tokens / r.step();
      const SimResult rep = replay_measured(r.plan, r.ranks);
      const double busy_tok_s = rep.makespan > 0 ? tokens / rep.makespan : 0;
      if (r.vocab == Vocab::off) {
        off_wall = tok_s;
        off_busy = busy_tok_s;
      }
      std::printf("%-6s %-5s | %8.1f %8.0f %5.2fx | %-31s %-31s %-31s %5.2f | %8.1f %9.0f %5.2fx\n",
                  r.schedule.c_str(), vocab_name(r.vocab), r.step() * 1e3, tok_s,
                  off_wall > 0 ? tok_s / off_wall : 0, slashed(exec, 1e3, "%.1f").c_str(),
                  slashed(busy, 1e3, "%.1f").c_str(), slashed(cpu, 1e3, "%.1f").c_str(),
                  sum_busy / (static_cast<double>(r.ranks.size()) * largest(exec)),
                  rep.makespan * 1e3, busy_tok_s, off_busy > 0 ? busy_tok_s / off_busy : 0);
    }
    std::printf(
        "  (util: sum busy / (ranks x max exec); replay: measured passes through "
        "simulate_schedule, messages free; busy t/s: tokens / replay)\n");

    const double N = static_cast<double>(o.micro * o.seq), D = static_cast<double>(o.dim),
                 m = static_cast<double>(o.m);
    const double ar_calls = 2 * m, bc_calls = 2 * m;
    const double ar_bytes = 4 * m * (6 * N * D + 6 * N), bc_bytes = 4 * m * 2 * N * D;
    std::printf(
        "\nTable 4: vocabulary collectives per step, per rank (vocab on; N = %.0f tokens, D = "
        "%.0f, m = %.0f): measured vocab_comm()->stats() against the analytic count\n",
        N, D, m);
    std::printf("%-6s | %-14s | %-35s %-35s | %-39s | %s\n", "sched", "", "all_reduce calls/bytes",
                "broadcast calls/bytes", "total bytes (all ops)", "match");
    for (const Row& r : rows) {
      if (r.vocab == Vocab::off) continue;
      bool exact = true;
      std::vector<double> total;
      for (const RankMeasure& k : r.ranks) {
        exact = exact && k.ar_calls == ar_calls && k.ar_bytes == ar_bytes &&
                k.bc_calls == bc_calls && k.bc_bytes == bc_bytes &&
                k.all_calls == ar_calls + bc_calls && k.all_bytes == ar_bytes + bc_bytes;
        total.push_back(k.all_bytes);
      }
      const RankMeasure& k0 = r.ranks.front();
      char ar[64], bc[64];
      std::snprintf(ar, sizeof ar, "%.0f / %.0f", k0.ar_calls, k0.ar_bytes);
      std::snprintf(bc, sizeof bc, "%.0f / %.0f", k0.bc_calls, k0.bc_bytes);
      const std::string label = std::string("measured (") + vocab_name(r.vocab) + ")";
      std::printf("%-6s | %-14s | %-35s %-35s | %-39s | %s\n", r.schedule.c_str(), label.c_str(),
                  ar, bc, slashed(total, 1, "%.0f").c_str(), exact ? "exact, every rank" : "NO");
      std::snprintf(ar, sizeof ar, "%.0f / %.0f", ar_calls, ar_bytes);
      std::snprintf(bc, sizeof bc, "%.0f / %.0f", bc_calls, bc_bytes);
      char tot[64];
      std::snprintf(tot, sizeof tot, "%.0f (%.2f MiB)", ar_bytes + bc_bytes,
                    (ar_bytes + bc_bytes) / kMiB);
      std::printf("%-6s | %-14s | %-35s %-35s | %-39s |\n", "", "analytic", ar, bc, tot);
    }
    std::printf(
        "  (all_reduce: EMBED_F 2ND + S statistics 2N(2D+3), x4 bytes; broadcast: S hn ND + "
        "EMBED_B ND, x4 bytes; each per micro-batch, x m)\n");
  }

  if (!o.skip_head) {
    const double N = static_cast<double>(small.micro * small.seq),
                 D = static_cast<double>(small.dim), V = static_cast<double>(small.vocab);
    const double tile = static_cast<double>(std::min<int64_t>(kTileRows, small.micro * small.seq) *
                                            std::min<int64_t>(kTileCols, small.vocab));
    const double expected = 4 * (4 * N * D + 5 * N + tile);
    const double before = 4 * std::min(N, static_cast<double>(kOldHeadRows)) * V;
    std::printf(
        "\nTable 5: pp=1, one process, vocab %.0f, dim %.0f, %lld layers, seq %lld x micro-batch "
        "%lld = %.0f tokens, one train_step (vocab_parallel off); MiB\n",
        V, D, static_cast<long long>(small.layers), static_cast<long long>(small.seq),
        static_cast<long long>(small.micro), N);
    std::printf("%8s %9s %10s | %9s %9s | %11s %10s %11s\n", "step ms", "step act", "total peak",
                "head act", "expected", "before", "before/act", "before/head");
    std::printf("%8.1f %9.2f %10.1f | %9.3f %9.3f | %11.1f %9.0fx %10.0fx\n", head.step_s * 1e3,
                head.step_act / kMiB, head.step_total / kMiB, head.head_act / kMiB, expected / kMiB,
                before / kMiB, head.step_act > 0 ? before / head.step_act : 0,
                head.head_act > 0 ? before / head.head_act : 0);
    std::printf(
        "  (step act: activations peak of the train_step; head act: one Model::head_loss alone "
        "(loss %.3f, ln V = %.3f); expected 4(4ND + 5N + tile %.0f); before: the previous head's "
        "min(N, 1024) x V x 4 logits buffer)\n",
        head.loss, std::log(V), tile);
  }
  return 0;
}

}  // namespace

// An error before MPI starts (a model shape the config refuses, say) is its message and exit 2,
// not an uncaught exception (SIGABRT).
int main(int argc, char** argv) {
  return strata::bench_main("vocab_bench", [&] { return run_bench(argc, argv); });
}
