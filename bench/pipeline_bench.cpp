// Pipeline-parallel benchmark: full Trainer steps under every pipeline schedule (gpipe, 1f1b,
// interleaved, zb-h1) at pp ranks and m micro-batches per step, measured with the executor's own
// clocks (PipelineStepStats) and the MemoryTracker, next to the ideal bubble and the simulator's
// prediction for the trainer's own plan; then tokens/s of pp = 2 against dp = 2 and against one
// process on the same model and global batch.
//
//   export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
//   export OMP_WAIT_POLICY=PASSIVE OMPI_MCA_mpi_yield_when_idle=1
//   mpirun --oversubscribe -np 4 build/bench/pipeline_bench                (tables 1-3)
//   mpirun --oversubscribe -np 2 build/bench/pipeline_bench                (table 3 only)
//   build/bench/pipeline_bench                                             (one process: pp=1 row)
//   mpirun --oversubscribe -np 2 build/bench/pipeline_bench --pp 2 --skip-tps
//       (tables 1-2 at pp=2 with a core per rank on a 2-core machine: there "busy" should match
//       "wall" and replay ms exec ms, which checks the replay)
//
// Options (defaults in brackets): --dim [128] --layers [8] --vocab [2048] --seq [128]
//   --micro-batch [1] --steps [2] (timed, after 1 warm-up) --repeat [3] (rounds, best kept)
//   --heads [dim/64] --kv-heads [heads/2] --ffn [8/3 dim, to 16] --pattern [LLLS]
//   --pp [4] --virtual-stages [2] (interleaved only)
//   --schedules [gpipe,1f1b,interleaved,zb-h1] --micro-batches [4,8,16] (per step, tables 1-2)
//   --tps-batch [8] (global batch of table 3, in sequences) --tps-schedule [1f1b] (its pp=2 row)
//   --skip-pipeline (no tables 1-2) --skip-tps (no table 3) --keep-data
//
// No data files are needed: rank 0 writes a random token shard to a temporary directory and
// broadcasts its path. Every configuration gets a fresh Trainer on a communicator of the first
// k world ranks (Comm::split; k = pp for tables 1-2, 2 or 1 for table 3): one warm-up step, then
// MemoryTracker peaks are reset and --steps steps are timed, a barrier before each. All
// configurations are run --repeat times, round after round, and each keeps its round with the
// shortest step (max over ranks of wall_s for tables 1-2, of train_step for table 3): the
// machine is shared, and a burst of someone else's work then spoils one round of each
// configuration, not every round of one (the load average is printed). The ranks
// outside a run sleep until rank 0 releases them (they poll a receive every 5 ms), so on an
// oversubscribed machine they take no CPU from the ranks measured. Every number below is per
// optimizer step (the mean over the timed steps) unless it says otherwise; "rank" is the
// pipeline rank (with dp = 1 it is the world rank), and with interleaved each rank holds
// virtual-stages stages (r, r + pp, ...), so "per stage" columns are per rank there.
//
// How to read the tables:
//
// Table 1, bubble fractions (0..1, smaller is better):
//   wall    1 - sum_r compute_s(r) / (ranks * max_r wall_s(r)), from the executor's timers:
//           compute_s is the time in F/B/I/W passes, wall_s the whole PipelineExecutor::run_step
//           (passes, receive waits, the final send completions). This is the bubble a user sees
//           on this machine. With more ranks than cores (4 ranks on 2 cores) it is distorted:
//           ranks that compute at the same time share a core, so their passes take longer in
//           wall time (compute_s inflates with it) and a rank waiting for a neighbour that is
//           descheduled waits for the scheduler, not for the schedule. Once the passes need
//           all the cores (sum busy / exec ms = cores), the wall bubble cannot fall much below
//           1 - cores / ranks (0.5 for 4 ranks on 2 cores) whatever the schedule does.
//   busy    the same schedule replayed through the simulator (simulate_schedule) with each
//           stage's F, B, I and W cost set to the measured pass time (this rank's forward_s /
//           number of its F passes, ..., split between the stages of a rank by their FLOPs),
//           messages free: 1 - sum busy / (ranks * replayed makespan). This is the bubble the
//           measured passes would leave if every rank had its own core: the schedule's idle
//           time plus the measured imbalance between stages, without the waits added by the OS
//           scheduler. Pass times measured under contention stay in the costs (a pass that
//           shared a core counts as slow); when every stage is slowed alike this cancels out.
//   ideal   (p - 1) / (m + p - 1): 1F1B (and GPipe) with equal stages and free messages.
//   form    the schedule's own closed form with equal stages and F = I = W = B/2:
//           gpipe, 1f1b (p-1)/(m+p-1); interleaved (p-1)/(v m+p-1); zb-h1 (p-1)/(3m+p-1).
//   sim     the trainer's plan, PipelinePlan::sim.bubble_fraction: the same schedule simulated
//           with per-stage FLOP costs (models/flops.h), messages free.
//   step ms  Trainer::train_step (max over ranks); exec ms: max_r wall_s; replay ms: the busy
//           replay's makespan; recv/send wait ms: the most any rank spent blocked at RECV_*
//           actions / completing its sends at the end of the step.
//
// Table 2, per-stage cost, memory and traffic:
//   compute ms   compute_s of each rank, ms, "r0/r1/..."; max/min is the ratio of the slowest
//                rank to the fastest, FLOP max/min the plan's prediction of it.
//   act MiB      MemoryTracker's activations peak over the timed steps, per rank (saved
//                activations of in-flight micro-batches); in-flight is the simulator's peak of
//                micro-batches with F started and last backward not finished, per rank (gpipe
//                holds all m on every rank, 1f1b pp - r on rank r).
//   sent KiB     point-to-point payload this rank sent (PipelineStepStats::bytes_sent), per
//                rank; total over ranks, and the expected total 2 (S - 1) m x message (S stages,
//                one activation forward and one gradient backward per boundary and
//                micro-batch; message = micro-batch x seq x dim x 4 bytes); msgs: messages, total.
//   cpu/cmp      sum_r process CPU seconds over train_step / sum_r compute_s: under 1 when
//                passes were slowed by sharing a core (wall time in passes exceeds the CPU time
//                the whole step used); above 1 by the step's work outside the passes (optimizer,
//                loss and norm reductions, polling) when each rank had a core to itself.
//   placement    below the table: the blocks each stage holds (split_stages, by FLOPs; a heavy
//                head leaves the last stage fewer blocks), once per virtual-stage count.
//
// Table 3, tokens/s on the same model and global batch (--tps-batch sequences of --seq tokens,
// micro-batch --micro-batch, OMP_NUM_THREADS threads per rank):
//   pp=1 one process (a SelfComm Trainer, no MPI), dp=2 two data-parallel replicas (ZeRO 0,
//   gradients all-reduced), pp=2 two pipeline stages (--tps-schedule). step ms: train_step, max
//   over ranks (includes the optimizer step and the loss/norm reductions); tok/s: global batch
//   tokens / step; exec ms: each rank's PipelineExecutor wall_s (every layout runs through the
//   executor; with pp = 1 it is the forward/backward of all micro-batches); busy ms: each rank's
//   compute_s; cpu ms: each rank's process CPU time over train_step; util: sum busy / (ranks x
//   step ms), the fraction of the ranks' wall time spent in passes.
#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
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
#include "parallel/schedule_sim.h"
#include "parallel/world.h"

using namespace strata;

using bench::load_average;
using bench::on_first_ranks;
using bench::process_cpu_seconds;
using bench::split_list;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kKiB = 1024.0;

struct Options {
  int64_t dim = 128, layers = 8, vocab = 2048, seq = 128, micro = 1, steps = 2;
  int64_t heads = 0, kv_heads = 0, ffn = 0;
  int64_t pp = 4, virtual_stages = 2, tps_batch = 8, repeat = 3;
  std::string pattern = "LLLS", tps_schedule = "1f1b";
  std::vector<std::string> schedules = {"gpipe", "1f1b", "interleaved", "zb-h1"};
  std::vector<int64_t> micro_batches = {4, 8, 16};
  bool skip_pipeline = false, skip_tps = false, keep_data = false;
};

// What one rank measured, per timed step (means).
struct RankMeasure {
  double pp_rank = 0;
  double compute = 0, forward = 0, backward = 0, backward_input = 0, backward_weight = 0;
  double recv_wait = 0, send_wait = 0, exec_wall = 0;
  double step = 0;  // Trainer::train_step
  double cpu = 0;   // process CPU time over train_step
  double bytes = 0, messages = 0;
  double act_peak = 0;  // activations peak over the timed steps, bytes
};
constexpr int kFields = 14;

std::array<double, kFields> pack(const RankMeasure& m) {
  return {m.pp_rank,
          m.compute,
          m.forward,
          m.backward,
          m.backward_input,
          m.backward_weight,
          m.recv_wait,
          m.send_wait,
          m.exec_wall,
          m.step,
          m.cpu,
          m.bytes,
          m.messages,
          m.act_peak};
}

RankMeasure unpack(const double* a) {
  RankMeasure m;
  m.pp_rank = a[0];
  m.compute = a[1];
  m.forward = a[2];
  m.backward = a[3];
  m.backward_input = a[4];
  m.backward_weight = a[5];
  m.recv_wait = a[6];
  m.send_wait = a[7];
  m.exec_wall = a[8];
  m.step = a[9];
  m.cpu = a[10];
  m.bytes = a[11];
  m.messages = a[12];
  m.act_peak = a[13];
  return m;
}

// Every rank's measure on every rank of `comm`, by rank: each fills its slot, zeros elsewhere,
// then a sum all-reduce.
std::vector<RankMeasure> gather(Comm& comm, const RankMeasure& mine) {
  const int n = comm.size();
  std::vector<double> all(static_cast<size_t>(n) * kFields, 0.0);
  const auto packed = pack(mine);
  std::copy(packed.begin(), packed.end(),
            all.begin() + static_cast<ptrdiff_t>(comm.rank()) * kFields);
  comm.all_reduce_sum_double(all.data(), static_cast<int64_t>(all.size()));
  std::vector<RankMeasure> out;
  for (int r = 0; r < n; ++r) out.push_back(unpack(all.data() + static_cast<size_t>(r) * kFields));
  return out;
}

// One warm-up step, then `steps` timed ones; `comm` spans the Trainer's ranks.
RankMeasure measure(Trainer& t, Comm& comm, int64_t steps) {
  t.train_step();  // buffers allocated, first touch done
  auto& tracker = MemoryTracker::instance();
  const int act = static_cast<int>(MemCategory::activations);
  comm.barrier();
  tracker.reset_peaks();
  const int64_t act0 = tracker.snapshot().current[act];
  RankMeasure m;
  m.pp_rank = t.mesh().pp_rank();
  for (int64_t i = 0; i < steps; ++i) {
    comm.barrier();  // every rank starts the step together
    const double c0 = process_cpu_seconds();
    const StepResult r = t.train_step();
    m.cpu += process_cpu_seconds() - c0;
    m.step += r.seconds;
    const PipelineStepStats& s = t.executor().last_step();
    m.compute += s.compute_s;
    m.forward += s.forward_s;
    m.backward += s.backward_s;
    m.backward_input += s.backward_input_s;
    m.backward_weight += s.backward_weight_s;
    m.recv_wait += s.recv_wait_s;
    m.send_wait += s.send_wait_s;
    m.exec_wall += s.wall_s;
    m.bytes += static_cast<double>(s.bytes_sent);
    m.messages += static_cast<double>(s.messages_sent);
  }
  m.act_peak = static_cast<double>(tracker.snapshot().peak[act] - act0);
  const double n = static_cast<double>(steps);
  for (double* f :
       {&m.compute, &m.forward, &m.backward, &m.backward_input, &m.backward_weight, &m.recv_wait,
        &m.send_wait, &m.exec_wall, &m.step, &m.cpu, &m.bytes, &m.messages})
    *f /= n;
  return m;
}

double max_of(const std::vector<RankMeasure>& ranks, double RankMeasure::*field) {
  double m = 0;
  for (const RankMeasure& r : ranks) m = std::max(m, r.*field);
  return m;
}

// The schedule replayed with the measured pass times as per-stage costs (the "busy" bubble).
SimResult replay(const PipelinePlan& plan, const std::vector<RankMeasure>& ranks) {
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
    double f = 0, b = 0, bi = 0, bw = 0;
    for (int s : mine) {
      f += plan.stages[s].forward_flops;
      b += plan.stages[s].backward_flops;
      bi += plan.stages[s].backward_input_flops;
      bw += plan.stages[s].backward_weight_flops;
    }
    auto share = [&](double measured, double flops, double total) {
      return total > 0 ? measured * flops / total / m
                       : measured / m / static_cast<double>(mine.size());
    };
    for (int s : mine) {
      const StagePlan& st = plan.stages[s];
      c.stage_forward[s] = share(r.forward, st.forward_flops, f);
      c.stage_backward[s] = share(r.backward, st.backward_flops, b);
      c.stage_backward_input[s] = share(r.backward_input, st.backward_input_flops, bi);
      c.stage_backward_weight[s] = share(r.backward_weight, st.backward_weight_flops, bw);
    }
  }
  return simulate_schedule(plan.schedule, c);
}

double closed_form(const std::string& schedule, double p, double m, double v) {
  if (schedule == "interleaved") return (p - 1) / (v * m + p - 1);
  if (schedule == "zb-h1") return (p - 1) / (3 * m + p - 1);
  return (p - 1) / (m + p - 1);
}

// "a/b/c" of values scaled by `scale`, printed with `fmt`.
std::string joined(const std::vector<double>& v, double scale, const char* fmt) {
  std::string out;
  char buf[64];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, fmt, v[i] * scale);
    if (i) out += "/";
    out += buf;
  }
  return out;
}

// "s0 (r0): emb + blocks 0-1 | s1 (r1): blocks 2-4 | ...": the plan's stage placement.
std::string placement(const PipelinePlan& plan, int64_t n_layers) {
  std::string out;
  char buf[128];
  for (const StagePlan& s : plan.stages) {
    const long long b0 = s.first_block(), b1 = s.end_block(n_layers) - 1;
    const char* emb = s.has_embedding() ? "emb + " : "";
    const char* head = s.end_unit == n_layers + 2 ? " + head" : "";
    if (b0 == b1)
      std::snprintf(buf, sizeof buf, "%ss%d (r%d): %sblock %lld%s", out.empty() ? "" : " | ",
                    s.stage, s.rank, emb, b0, head);
    else
      std::snprintf(buf, sizeof buf, "%ss%d (r%d): %sblocks %lld-%lld%s", out.empty() ? "" : " | ",
                    s.stage, s.rank, emb, b0, b1, head);
    out += buf;
  }
  return out;
}

struct PipelineRow {
  std::string schedule;
  int64_t v = 1, m = 0;
  PipelinePlan plan;
  std::vector<RankMeasure> ranks;  // by pp rank
};

struct TpsRow {
  std::string layout;
  int ranks = 1;
  int64_t m = 0;
  std::vector<RankMeasure> meas;
};

// The exit code of an error: a StrataError's own (2 for bad input), else 1.
int exit_code(const std::exception& e) {
  const auto* s = dynamic_cast<const StrataError*>(&e);
  return s ? static_cast<int>(s->code()) : 1;
}

int run_bench(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "pipeline_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&] { return bench_number("pipeline_bench", a, next()); };
    if (a == "--dim")
      o.dim = number();
    else if (a == "--layers")
      o.layers = number();
    else if (a == "--vocab")
      o.vocab = number();
    else if (a == "--seq")
      o.seq = number();
    else if (a == "--micro-batch")
      o.micro = number();
    else if (a == "--steps")
      o.steps = number();
    else if (a == "--repeat")
      o.repeat = number();
    else if (a == "--heads")
      o.heads = number();
    else if (a == "--kv-heads")
      o.kv_heads = number();
    else if (a == "--ffn")
      o.ffn = number();
    else if (a == "--pattern")
      o.pattern = next();
    else if (a == "--pp")
      o.pp = number();
    else if (a == "--virtual-stages")
      o.virtual_stages = number();
    else if (a == "--schedules")
      o.schedules = split_list(next());
    else if (a == "--micro-batches") {
      o.micro_batches.clear();
      for (const std::string& s : split_list(next()))
        o.micro_batches.push_back(bench_number("pipeline_bench", a, s));
    } else if (a == "--tps-batch")
      o.tps_batch = number();
    else if (a == "--tps-schedule")
      o.tps_schedule = next();
    else if (a == "--skip-pipeline")
      o.skip_pipeline = true;
    else if (a == "--skip-tps")
      o.skip_tps = true;
    else if (a == "--keep-data")
      o.keep_data = true;
    else {
      std::fprintf(stderr, "pipeline_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.heads <= 0) o.heads = std::max<int64_t>(1, o.dim / 64);
  if (o.kv_heads <= 0) o.kv_heads = o.heads % 2 == 0 ? o.heads / 2 : o.heads;
  if (o.ffn <= 0) o.ffn = (o.dim * 8 / 3 + 15) / 16 * 16;
  if (o.steps < 1) o.steps = 1;
  if (o.repeat < 1) o.repeat = 1;
  // Sizes that crashed before any config saw them: --vocab 0 divided by zero drawing the random
  // tokens (SIGFPE), --micro-batch 0 would too (table 3's micro-batches per rank), --pp 0 left
  // every rank waiting for a release from a run on no rank (a hang).
  auto at_least = [](const char* flag, int64_t v, int64_t min) {
    if (v >= min) return true;
    std::fprintf(stderr, "pipeline_bench: %s: expected a value >= %lld, got %lld\n", flag,
                 static_cast<long long>(min), static_cast<long long>(v));
    return false;
  };
  if (!at_least("--dim", o.dim, 1) || !at_least("--layers", o.layers, 1) ||
      !at_least("--vocab", o.vocab, 1) || !at_least("--seq", o.seq, 1) ||
      !at_least("--micro-batch", o.micro, 1) || !at_least("--pp", o.pp, 1) ||
      !at_least("--virtual-stages", o.virtual_stages, 1) ||
      !at_least("--tps-batch", o.tps_batch, 1))
    return 2;
  if (o.micro_batches.empty()) {
    std::fprintf(stderr, "pipeline_bench: --micro-batches: expected a comma list of counts\n");
    return 2;
  }
  for (int64_t m : o.micro_batches)
    if (!at_least("--micro-batches", m, 1)) return 2;

  std::string dir;  // the shared temporary directory, once the ranks have made it
  const std::string yaml = R"(
model: {layer_pattern: LLLS, linear_attention: {chunk_size: 64}}
train: {steps: 1000, eval_every: 0, eval_batches: 1}
optim: {lr: 1.0e-3, warmup_steps: 1}
checkpoint: {every: 0, keep_last: 0, resume: never}
)";
  // pp x dp ranks, the schedule with v stages per rank, global_batch sequences per step.
  auto config = [&](int64_t pp, int64_t dp, const std::string& schedule, int64_t v,
                    int64_t global_batch, const std::string& run) {
    const std::vector<std::string> sets = {
        "model.vocab_size=" + std::to_string(o.vocab),
        "model.dim=" + std::to_string(o.dim),
        "model.n_layers=" + std::to_string(o.layers),
        "model.n_heads=" + std::to_string(o.heads),
        "model.n_kv_heads=" + std::to_string(o.kv_heads),
        "model.ffn_dim=" + std::to_string(o.ffn),
        "model.layer_pattern=" + o.pattern,
        "data.train=" + dir + "/train",
        "data.seq_len=" + std::to_string(o.seq),
        "train.global_batch=" + std::to_string(global_batch),
        "train.micro_batch=" + std::to_string(o.micro),
        "train.run_dir=" + dir + "/" + run,
        "train.eval_every=0",
        // Passes slowed by oversubscription must not trip the collective watchdog.
        "train.collective_timeout_s=600",
        "checkpoint.resume=never",
        "parallel.dp=" + std::to_string(dp),
        "parallel.pp=" + std::to_string(pp),
        "parallel.schedule=" + schedule,
        "parallel.virtual_stages=" + std::to_string(v),
    };
    return parse_job_config(yaml, "pipeline_bench.yaml", sets);
  };
  // The model shape (a --dim the heads do not divide, say) and table 3's batch, checked by the
  // config on every rank before MPI starts and any file is written: an error is its message and
  // exit 2 (it was an uncaught exception on rank 0, SIGABRT).
  config(1, 1, "1f1b", 1, o.micro, "count");
  if (!o.skip_tps) config(1, 1, "1f1b", 1, o.tps_batch, "tps");

  World world(nullptr, nullptr);
  Comm& comm = world.comm();
  const int N = comm.size();
  const bool root = comm.rank() == 0;
  const int P = static_cast<int>(o.pp);
  const bool run_pipeline = !o.skip_pipeline && N >= P;
  const int tps_ranks = std::min(N, 2);

  // Random tokens: time, memory and traffic do not depend on the text.
  dir = bench::shared_temp_dir(comm, "strata_pipeline_bench");
  if (dir.empty()) {
    if (root) std::fprintf(stderr, "pipeline_bench: cannot create a temporary directory\n");
    return 1;
  }
  int ok = 1;
  if (root) {
    try {
      int64_t most = o.tps_batch;
      for (int64_t m : o.micro_batches) most = std::max(most, m * o.micro);
      const int64_t windows = std::max<int64_t>(256, most * 4);
      bench::write_random_shard(dir + "/train_000000.bin", windows, o.seq, o.vocab, 11,
                                "bench/pipeline_tokens");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pipeline_bench: %s\n", e.what());
      ok = 0;
    }
  }
  comm.broadcast_bytes(&ok, sizeof ok, 0);
  if (!ok) return 1;

  auto fail = [&](const std::string& what, const std::exception& e) {
    // Only this rank may have failed: end the job rather than leave the others waiting (exit 2
    // for bad input, such as a schedule the trainer refuses).
    std::fprintf(stderr, "pipeline_bench: rank %d, %s: %s\n", comm.rank(), what.c_str(), e.what());
    world.abort(exit_code(e));
  };

  int64_t params = 0;
  if (root) {
    try {
      const JobConfig c = config(1, 1, "1f1b", 1, o.micro, "count");
      const Model counted(c.model, std::vector<bool>(static_cast<size_t>(o.layers + 2), false));
      for (const ParamUnit& u : counted.units()) params += u.numel();
    } catch (const std::exception& e) {
      fail("model", e);
    }
  }
  const std::string load_start = load_average();
  const auto t_start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };

  // Tables 1-2: every schedule at pp ranks, for each micro-batch count; table 3: pp=1 (one
  // process), dp=2 and pp=2 on the same global batch. --repeat rounds over all of them (so a
  // burst of other work on the machine hits one round of each, not all rounds of one); each
  // configuration keeps its round with the shortest step (rank 0 decides, the others discard).
  struct Layout {
    std::string name;
    int64_t pp, dp;
  };
  std::vector<Layout> layouts;
  if (!o.skip_tps) {
    layouts.push_back({"pp=1", 1, 1});
    if (tps_ranks >= 2) {
      layouts.push_back({"dp=2", 1, 2});
      layouts.push_back({"pp=2 " + o.tps_schedule, 2, 1});
    }
  }
  std::vector<PipelineRow> rows;
  std::vector<TpsRow> tps;
  for (int64_t round = 0; round < o.repeat; ++round) {
    size_t index = 0;
    for (const std::string& schedule : run_pipeline ? o.schedules : std::vector<std::string>{}) {
      for (int64_t m : o.micro_batches) {
        PipelineRow row;
        row.schedule = schedule;
        row.v = schedule == "interleaved" ? o.virtual_stages : 1;
        row.m = m;
        on_first_ranks(comm, P, false, [&](Comm* sub) {
          RankMeasure mine;
          const std::string what = schedule + " m=" + std::to_string(m);
          try {
            Trainer t(config(P, 1, schedule, row.v, m * o.micro, "pp"), sub);
            mine = measure(t, *sub, o.steps);
            if (root) row.plan = t.pipeline_plan();
          } catch (const std::exception& e) {
            fail(what, e);
          }
          std::vector<RankMeasure> all = gather(*sub, mine);
          std::sort(all.begin(), all.end(), [](const RankMeasure& a, const RankMeasure& b) {
            return a.pp_rank < b.pp_rank;
          });
          row.ranks = std::move(all);
          if (root)
            std::fprintf(
                stderr, "pipeline_bench: round %lld %-11s m=%-3lld exec %6.1f ms (%.0f s)\n",
                static_cast<long long>(round + 1), schedule.c_str(), static_cast<long long>(m),
                max_of(row.ranks, &RankMeasure::exec_wall) * 1e3, elapsed());
        });
        if (root) {
          if (rows.size() <= index)
            rows.push_back(std::move(row));
          else if (max_of(row.ranks, &RankMeasure::exec_wall) <
                   max_of(rows[index].ranks, &RankMeasure::exec_wall))
            rows[index] = std::move(row);
        }
        ++index;
      }
    }
    index = 0;
    for (const Layout& l : layouts) {
      TpsRow row;
      row.layout = l.name;
      row.ranks = static_cast<int>(l.pp * l.dp);
      row.m = o.tps_batch / (l.dp * o.micro);
      on_first_ranks(comm, row.ranks, row.ranks == 1, [&](Comm* sub) {
        RankMeasure mine;
        try {
          Trainer t(config(l.pp, l.dp, l.pp > 1 ? o.tps_schedule : "1f1b", 1, o.tps_batch, "tps"),
                    sub);
          mine = measure(t, sub ? *sub : t.mesh().world(), o.steps);
        } catch (const std::exception& e) {
          fail(l.name, e);
        }
        row.meas = sub ? gather(*sub, mine) : std::vector<RankMeasure>{mine};
        if (root)
          std::fprintf(stderr, "pipeline_bench: round %lld %-15s step %6.1f ms (%.0f s)\n",
                       static_cast<long long>(round + 1), l.name.c_str(),
                       max_of(row.meas, &RankMeasure::step) * 1e3, elapsed());
      });
      if (root) {
        if (tps.size() <= index)
          tps.push_back(std::move(row));
        else if (max_of(row.meas, &RankMeasure::step) < max_of(tps[index].meas, &RankMeasure::step))
          tps[index] = std::move(row);
      }
      ++index;
    }
  }
  comm.barrier();
  if (root && !o.keep_data) std::filesystem::remove_all(dir);
  if (!root) return 0;

  const double msg_bytes = static_cast<double>(o.micro * o.seq * o.dim) * 4.0;
  std::printf(
      "pipeline_bench: %lld params (dim %lld, %lld layers %s, heads %lld/%lld, ffn %lld, "
      "vocab %lld), seq %lld, micro-batch %lld, %lld timed steps after 1 warm-up (best of "
      "%lld rounds), %d world ranks (%s), OMP_NUM_THREADS=%s, %u hardware threads, %.0f s total\n",
      static_cast<long long>(params), static_cast<long long>(o.dim),
      static_cast<long long>(o.layers), o.pattern.c_str(), static_cast<long long>(o.heads),
      static_cast<long long>(o.kv_heads), static_cast<long long>(o.ffn),
      static_cast<long long>(o.vocab), static_cast<long long>(o.seq),
      static_cast<long long>(o.micro), static_cast<long long>(o.steps),
      static_cast<long long>(o.repeat), N, comm.backend(),
      std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "unset",
      std::thread::hardware_concurrency(), elapsed());
  std::printf(
      "load average (1, 5, 15 min) at start %s, at end %s: other work on the machine "
      "takes cores from the ranks\n",
      load_start.c_str(), load_average().c_str());

  if (!run_pipeline) {
    std::printf("\n(tables 1-2 skipped: %s)\n",
                o.skip_pipeline ? "--skip-pipeline" : "they need at least --pp world ranks");
  } else {
    std::printf(
        "\nTable 1: bubble fraction per step at pp=%d (wall: executor clocks; busy: measured "
        "passes replayed, one core per rank; ideal (p-1)/(m+p-1); form: the schedule's "
        "closed form; sim: the plan's FLOP-cost simulation); times in ms per step\n",
        P);
    std::printf("%-11s %2s %3s | %6s %6s %6s %6s %6s | %8s %8s %8s %8s | %8s %8s\n", "schedule",
                "v", "m", "wall", "busy", "ideal", "form", "sim", "step ms", "exec ms", "replay",
                "sum busy", "recv wt", "send wt");
    for (const PipelineRow& r : rows) {
      double sum_compute = 0, max_wall = 0, max_step = 0, max_recv = 0, max_send = 0;
      for (const RankMeasure& k : r.ranks) {
        sum_compute += k.compute;
        max_wall = std::max(max_wall, k.exec_wall);
        max_step = std::max(max_step, k.step);
        max_recv = std::max(max_recv, k.recv_wait);
        max_send = std::max(max_send, k.send_wait);
      }
      const double ranks = static_cast<double>(r.ranks.size());
      const double wall_bubble = 1 - sum_compute / (ranks * max_wall);
      const SimResult busy = replay(r.plan, r.ranks);
      const double m = static_cast<double>(r.m);
      std::printf(
          "%-11s %2lld %3lld | %6.3f %6.3f %6.3f %6.3f %6.3f | %8.1f %8.1f %8.1f %8.1f | "
          "%8.1f %8.1f\n",
          r.schedule.c_str(), static_cast<long long>(r.v), static_cast<long long>(r.m), wall_bubble,
          busy.bubble_fraction, (P - 1.0) / (m + P - 1.0),
          closed_form(r.schedule, P, m, static_cast<double>(r.v)), r.plan.sim.bubble_fraction,
          max_step * 1e3, max_wall * 1e3, busy.makespan * 1e3, sum_compute * 1e3, max_recv * 1e3,
          max_send * 1e3);
    }
    std::printf(
        "  (sum busy: compute_s summed over the %d ranks; recv/send wt: the most any rank "
        "waited at RECV_* / for its sends)\n",
        P);

    std::printf(
        "\nTable 2: per-rank compute (ms per step), activation peak (MiB), in-flight "
        "micro-batches (simulated), p2p bytes sent (KiB per step); per-rank lists "
        "r0/r1/...\n");
    std::printf("%-11s %3s | %-27s %6s %6s | %-23s %6s | %-11s | %-31s %9s %9s %5s | %7s\n",
                "schedule", "m", "compute ms per rank", "max/mn", "FLOP", "act MiB per rank",
                "max/mn", "in-flight", "sent KiB per rank", "total", "expected", "msgs", "cpu/cmp");
    for (const PipelineRow& r : rows) {
      std::vector<double> compute, act, sent;
      double total = 0, msgs = 0, cpu = 0, sum_compute = 0;
      for (const RankMeasure& k : r.ranks) {
        compute.push_back(k.compute);
        act.push_back(k.act_peak);
        sent.push_back(k.bytes);
        total += k.bytes;
        msgs += k.messages;
        cpu += k.cpu;
        sum_compute += k.compute;
      }
      std::vector<double> flops(r.ranks.size(), 0.0);
      for (const StagePlan& s : r.plan.stages)
        flops[static_cast<size_t>(s.rank)] += s.forward_flops + s.backward_flops;
      auto ratio = [](const std::vector<double>& v) {
        const auto [mn, mx] = std::minmax_element(v.begin(), v.end());
        return *mn > 0 ? *mx / *mn : 0.0;
      };
      std::vector<double> inflight;
      for (int x : r.plan.sim.peak_in_flight) inflight.push_back(x);
      const double expected = 2.0 * static_cast<double>(r.plan.stages.size() - 1) *
                              static_cast<double>(r.m) * msg_bytes;
      std::printf(
          "%-11s %3lld | %-27s %6.2f %6.2f | %-23s %6.2f | %-11s | %-31s %9.0f %9.0f %5.0f | "
          "%7.2f\n",
          r.schedule.c_str(), static_cast<long long>(r.m), joined(compute, 1e3, "%.1f").c_str(),
          ratio(compute), ratio(flops), joined(act, 1 / kMiB, "%.2f").c_str(), ratio(act),
          joined(inflight, 1, "%.0f").c_str(), joined(sent, 1 / kKiB, "%.0f").c_str(), total / kKiB,
          expected / kKiB, msgs, sum_compute > 0 ? cpu / sum_compute : 0.0);
    }
    std::printf(
        "  (FLOP: the plan's max/min of per-rank F+B FLOPs; expected: 2 (S-1) m x %.0f KiB "
        "messages, S stages; cpu/cmp: sum of process CPU s over train_step / sum of "
        "compute_s, < 1 = passes slowed by sharing cores)\n",
        msg_bytes / kKiB);
    std::vector<std::string> seen;
    for (const PipelineRow& r : rows) {
      const std::string p = "v=" + std::to_string(r.v) + ": " + placement(r.plan, o.layers);
      if (std::find(seen.begin(), seen.end(), p) != seen.end()) continue;
      seen.push_back(p);
      std::printf("  placement %s\n", p.c_str());
    }
  }

  if (!tps.empty()) {
    std::printf(
        "\nTable 3: tokens/s, global batch %lld x %lld tokens, micro-batch %lld; times in "
        "ms per step, per-rank lists r0/r1\n",
        static_cast<long long>(o.tps_batch), static_cast<long long>(o.seq),
        static_cast<long long>(o.micro));
    std::printf("%-13s %5s %6s | %8s %9s %7s | %-15s %-15s %-15s | %5s\n", "layout", "ranks",
                "m/rank", "step ms", "tok/s", "vs pp=1", "exec ms", "busy ms", "cpu ms", "util");
    double base = 0;
    for (const TpsRow& r : tps) {
      std::vector<double> exec, busy, cpu;
      double step = 0, sum_busy = 0;
      for (const RankMeasure& k : r.meas) {
        exec.push_back(k.exec_wall);
        busy.push_back(k.compute);
        cpu.push_back(k.cpu);
        step = std::max(step, k.step);
        sum_busy += k.compute;
      }
      const double tok_s = static_cast<double>(o.tps_batch * o.seq) / step;
      if (base == 0) base = tok_s;
      std::printf("%-13s %5d %6lld | %8.1f %9.0f %6.2fx | %-15s %-15s %-15s | %5.2f\n",
                  r.layout.c_str(), r.ranks, static_cast<long long>(r.m), step * 1e3, tok_s,
                  tok_s / base, joined(exec, 1e3, "%.1f").c_str(),
                  joined(busy, 1e3, "%.1f").c_str(), joined(cpu, 1e3, "%.1f").c_str(),
                  sum_busy / (static_cast<double>(r.ranks) * step));
    }
    std::printf(
        "  (util: sum busy / (ranks x step ms); busy = executor compute_s, cpu = process "
        "CPU time over train_step)\n");
  }
  return 0;
}

}  // namespace

// An error before MPI starts (a model shape the config refuses, say) is its message and exit 2,
// not an uncaught exception (SIGABRT).
int main(int argc, char** argv) {
  return strata::bench_main("pipeline_bench", [&] { return run_bench(argc, argv); });
}
