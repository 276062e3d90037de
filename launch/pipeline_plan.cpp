#include "launch/pipeline_plan.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "launch/pipeline_keys.h"
#include "models/flops.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_file.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_vocab.h"
#include "parallel/stage_split.h"

namespace strata {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

// The simulator holds every (stage, micro-batch) action in maps: past this many pairs a plan
// would take minutes and gigabytes to print, far beyond any real job (128 stages x 32768).
constexpr int64_t kMaxSchedulePairs = int64_t{1} << 22;

// "= 24 / (1 * 8)": where the micro-batch count comes from, for messages about it.
std::string micro_batch_origin(const JobConfig& cfg) {
  return "train.global_batch / (parallel.dp * train.micro_batch) = " + str(cfg.train.global_batch) +
         " / (" + str(cfg.parallel.dp) + " * " + str(cfg.train.micro_batch) + ")";
}

int micro_batches_of(const JobConfig& cfg) {
  const int64_t per_step = cfg.train.micro_batch * cfg.parallel.dp;
  if (cfg.train.micro_batch < 1 || cfg.parallel.dp < 1 || cfg.train.global_batch < 1 ||
      cfg.train.global_batch % per_step != 0)
    throw InputError(
        "train.global_batch: expected a positive multiple of train.micro_batch * "
        "parallel.dp = " +
        str(per_step) + ", got " + str(cfg.train.global_batch));
  return static_cast<int>(cfg.train.global_batch / per_step);
}

void check_job(const JobConfig& cfg, int m) {
  const ParallelConfig& p = cfg.parallel;
  if (p.pp < 1 || p.pp > (int64_t{1} << 20))
    throw InputError("parallel.pp: expected a value in [1, 1048576], got " + str(p.pp));
  if (const auto problem = pipeline_key_problem(cfg))
    throw InputError(problem->key + ": " + problem->what);
  const int64_t stages = p.pp * p.virtual_stages;
  if (stages * m > kMaxSchedulePairs)
    throw InputError("parallel.pp: a schedule of " + str(stages) + " stages x " + str(m) +
                     " micro-batches (" + micro_batch_origin(cfg) + ") has more than " +
                     str(kMaxSchedulePairs) + " (stage, micro-batch) pairs");
}

// The blocks per stage: parallel.pp_layers, else the split minimising the slowest stage's
// forward + backward FLOPs (the head's on the last stage, the embedding's on the first; with
// vocabulary parallelism neither: their shards cost every rank alike, in the vocabulary passes).
std::vector<int64_t> blocks_per_stage(const JobConfig& cfg, const std::vector<UnitFlops>& units,
                                      int64_t n_stages) {
  if (!cfg.parallel.pp_layers.empty()) return cfg.parallel.pp_layers;
  StageSplitCosts costs;
  for (size_t u = 1; u + 1 < units.size(); ++u) costs.blocks.push_back(units[u].total());
  if (!cfg.parallel.vocab_parallel) {
    costs.first_extra = units.front().total();
    costs.last_extra = units.back().total();
  }
  return split_stages(costs, n_stages);
}

std::vector<StagePlan> place_stages(const JobConfig& cfg, const std::vector<UnitFlops>& units) {
  const int pp = static_cast<int>(cfg.parallel.pp);
  const auto n_stages = static_cast<int64_t>(pp * cfg.parallel.virtual_stages);
  const std::vector<int64_t> counts = blocks_per_stage(cfg, units, n_stages);
  const int64_t L = cfg.model.n_layers;
  std::vector<StagePlan> stages;
  int64_t block = 0;
  for (int64_t s = 0; s < n_stages; ++s) {
    StagePlan st;
    st.stage = static_cast<int>(s);
    st.rank = static_cast<int>(s % pp);
    st.first_unit = s == 0 ? 0 : block + 1;
    block += counts[static_cast<size_t>(s)];
    st.end_unit = s + 1 == n_stages ? L + 2 : block + 1;
    for (int64_t u = st.first_unit; u < st.end_unit; ++u) {
      const bool vocab_unit = u == 0 || u == L + 1;             // the embedding, the head
      if (vocab_unit && cfg.parallel.vocab_parallel) continue;  // in the vocabulary passes
      const UnitFlops& f = units[static_cast<size_t>(u)];
      st.forward_flops += f.forward;
      st.backward_input_flops += f.backward_input;
      st.backward_weight_flops += f.backward_weight;
    }
    st.backward_flops = st.backward_input_flops + st.backward_weight_flops;
    stages.push_back(st);
  }
  return stages;
}

Schedule generated_schedule(const JobConfig& cfg, int m, const SimCosts& costs) {
  const ParallelConfig& p = cfg.parallel;
  try {
    const ScheduleKind kind = parse_schedule_kind(p.schedule);
    // 1F1B with vocabulary passes runs each backward one forward later, so the last stage's S
    // all-reduce overlaps a forward (schedule_gen.h make_1f1b, `lead`); ZB-H1's deferred W
    // passes already give it that work.
    const int lead = p.vocab_parallel && kind == ScheduleKind::one_f_one_b ? 1 : 0;
    Schedule s =
        make_schedule(kind, static_cast<int>(p.pp), m, static_cast<int>(p.virtual_stages), lead);
    if (p.vocab_parallel) s = add_vocab_passes(s, costs);
    return lower_schedule(s);
  } catch (const InputError& e) {
    throw InputError("parallel.schedule: " + std::string(e.what()) +
                     " (micro-batches: " + micro_batch_origin(cfg) + ")");
  }
}

// A file's vocabulary passes must agree with parallel.vocab_parallel; a compute-only file gets
// them placed as a generator's schedule does, a lowered one can't (its messages are fixed).
Schedule file_vocab_passes(const JobConfig& cfg, Schedule s, const SimCosts& costs) {
  const std::string what = "parallel.schedule_file: " + cfg.parallel.schedule_file + " ";
  const bool has = has_vocab_passes(s);
  if (has && !cfg.parallel.vocab_parallel)
    throw InputError(what +
                     "holds vocabulary-parallel passes (S, T, EMBED_F, EMBED_B), but "
                     "parallel.vocab_parallel is false");
  if (has || !cfg.parallel.vocab_parallel) return s;
  if (is_lowered(s))
    throw InputError(
        what +
        "is lowered without vocabulary-parallel passes, but parallel.vocab_parallel "
        "is true: add them, or drop its SEND/RECV/REDUCE_GRAD rows so they are placed");
  return add_vocab_passes(s, costs);
}

// A schedule file replaces the generator; it must describe this job's pipeline.
Schedule file_schedule(const JobConfig& cfg, int m, const SimCosts& costs) {
  const ParallelConfig& p = cfg.parallel;
  const std::string& path = p.schedule_file;
  Schedule s = load_schedule_file(path);  // parsed, validated and proven deadlock-free
  const std::string what = "parallel.schedule_file: " + path + " ";
  if (s.pp != p.pp)
    throw InputError(what + "is for pp=" + str(s.pp) + ", but parallel.pp = " + str(p.pp));
  if (s.micro_batches != m)
    throw InputError(what + "has micro_batches=" + str(s.micro_batches) + ", but the job runs " +
                     str(m) + " micro-batches per step (" + micro_batch_origin(cfg) + ")");
  if (s.stages != p.pp * p.virtual_stages)
    throw InputError(what + "has stages=" + str(s.stages) + " (" + str(s.virtual_stages()) +
                     " per rank), but parallel.pp * parallel.virtual_stages = " + str(p.pp) +
                     " * " + str(p.virtual_stages) + " = " + str(p.pp * p.virtual_stages));
  s = file_vocab_passes(cfg, s, costs);
  if (!is_lowered(s)) s = lower_schedule(s);  // a compute-only file gets the standard messages
  validate_schedule(s);
  return s;
}

// Per-stage costs from the FLOPs; the scalar costs are the slowest stage's, for any reader that
// wants one number per action type.
SimCosts stage_sim_costs(const std::vector<StagePlan>& stages, double peak_flops) {
  const double scale = peak_flops > 0 ? 1 / peak_flops : 1e-9;
  SimCosts c;
  c.forward = c.backward = c.backward_input = c.backward_weight = 0;
  for (const StagePlan& st : stages) {
    c.stage_forward.push_back(st.forward_flops * scale);
    c.stage_backward.push_back(st.backward_flops * scale);
    c.stage_backward_input.push_back(st.backward_input_flops * scale);
    c.stage_backward_weight.push_back(st.backward_weight_flops * scale);
    c.forward = std::max(c.forward, c.stage_forward.back());
    c.backward = std::max(c.backward, c.stage_backward.back());
    c.backward_input = std::max(c.backward_input, c.stage_backward_input.back());
    c.backward_weight = std::max(c.backward_weight, c.stage_backward_weight.back());
  }
  return c;
}

// One rank's shard of the vocabulary passes (V / pp rows of the head and the embedding): S is
// the shard's logits and their input gradient (forward + input-gradient GEMMs), T its weight
// gradient, which models/flops.h counts with the logits recomputed (vocab_split). The embedding
// passes have no GEMM; each is priced at one FLOP per element of the [N, D] activations its
// collective sums or hands out, so they cost a little, as a collective does.
void add_vocab_costs(SimCosts& c, const JobConfig& cfg, const FlopShape& shape, double scale) {
  const UnitFlops head = head_flops(cfg.model, shape.tokens, /*vocab_split=*/true);
  const double shard = scale / static_cast<double>(cfg.parallel.pp);
  c.vocab_s = (head.forward + head.backward_input) * shard;
  c.vocab_t = head.backward_weight * shard;
  c.embed_f = c.embed_b = static_cast<double>(shape.tokens * cfg.model.dim) * scale;
}

}  // namespace

std::vector<int> PipelinePlan::stages_of_rank(int r) const {
  std::vector<int> out;
  for (const StagePlan& st : stages)
    if (st.rank == r) out.push_back(st.stage);
  return out;
}

int PipelinePlan::stage_of_unit(int64_t u) const {
  for (const StagePlan& st : stages)
    if (u >= st.first_unit && u < st.end_unit) return st.stage;
  STRATA_CHECK(false, "unit " + std::to_string(u) + " is on no pipeline stage");
}

PipelinePlan plan_pipeline(const JobConfig& cfg, double peak_flops) {
  const int m = micro_batches_of(cfg);
  check_job(cfg, m);
  PipelinePlan plan;
  plan.pp = static_cast<int>(cfg.parallel.pp);
  plan.virtual_stages = static_cast<int>(cfg.parallel.virtual_stages);
  plan.micro_batches = m;
  plan.schedule_name =
      cfg.parallel.schedule_file.empty() ? cfg.parallel.schedule : cfg.parallel.schedule_file;
  // One rank's micro-batch: micro_batch sequences of its seq_len / sp chunk.
  const int64_t chunk =
      std::max<int64_t>(1, cfg.data.seq_len / std::max<int64_t>(1, cfg.parallel.sp));
  const FlopShape shape{cfg.train.micro_batch * chunk, chunk, cfg.data.seq_len};
  plan.stages = place_stages(cfg, unit_flops(cfg.model, shape));
  plan.vocab_parallel = cfg.parallel.vocab_parallel;
  plan.peak_flops = peak_flops > 0 ? peak_flops : 0;
  plan.costs = stage_sim_costs(plan.stages, plan.peak_flops);
  if (plan.vocab_parallel)
    add_vocab_costs(plan.costs, cfg, shape, plan.peak_flops > 0 ? 1 / plan.peak_flops : 1e-9);
  plan.schedule = cfg.parallel.schedule_file.empty() ? generated_schedule(cfg, m, plan.costs)
                                                     : file_schedule(cfg, m, plan.costs);
  plan.sim = simulate_schedule(plan.schedule, plan.costs);
  return plan;
}

}  // namespace strata
