#pragma once
// The pipeline plan of a job: which units each pipeline stage holds, and the lowered, validated
// and simulated schedule the executor follows (docs/PIPELINE.md). Built from the job file alone
// (no ranks, no model allocation), so `strata schedule JOB.yaml` prints exactly what `strata
// train` would run.
//
// Stages are contiguous ranges of Model::units() (units[0] = embedding, units[1..L] = blocks,
// units[L+1] = head): stage 0 starts at unit 0, the last stage ends at unit L+2, and every stage
// holds at least one block. Blocks are placed by cost (models/flops.h: each block's forward +
// backward FLOPs, the head's on the last stage, the embedding's on the first) so the slowest
// stage is as fast as it can be, unless parallel.pp_layers gives the blocks per stage.
//
// With parallel.vocab_parallel the embedding and the head are split by vocabulary rows over all
// ranks: the stages keep their unit ranges (stage 0 still starts at unit 0, the last still ends
// with the head) but not their FLOPs, which go to the vocabulary passes the schedule gets
// (parallel/schedule_vocab.h), priced per rank's shard in SimCosts::vocab_s, vocab_t, embed_*.
#include <cstdint>
#include <string>
#include <vector>

#include "launch/job_config.h"
#include "parallel/schedule.h"
#include "parallel/schedule_sim.h"

namespace strata {

struct StagePlan {
  int stage = 0;           // global stage index in [0, pp * virtual_stages)
  int rank = 0;            // pipeline rank holding it (stage % pp: loop placement)
  int64_t first_unit = 0;  // [first_unit, end_unit) of Model::units()
  int64_t end_unit = 0;
  double forward_flops = 0;   // one micro-batch on one (dp, sp) rank (vocab units excluded
                              // under vocabulary parallelism)
  double backward_flops = 0;  // B = I + W
  double backward_input_flops = 0;
  double backward_weight_flops = 0;
  bool has_embedding() const { return first_unit == 0; }
  int64_t first_block() const { return has_embedding() ? 0 : first_unit - 1; }  // model index
  int64_t end_block(int64_t n_layers) const {
    return end_unit > n_layers ? n_layers : end_unit - 1;
  }
};

struct PipelinePlan {
  int pp = 1;
  int virtual_stages = 1;
  int micro_batches = 1;      // per data-parallel rank per step: global_batch / (dp * micro_batch)
  std::string schedule_name;  // "1f1b", ... or the schedule file's path
  bool vocab_parallel = false;    // the schedule holds EMBED_F, S, T, EMBED_B on every rank
  std::vector<StagePlan> stages;  // by stage index
  Schedule schedule;              // lowered and validated
  SimCosts costs;                 // per action, in seconds at the machine's sgemm peak
  SimResult sim;                  // simulate_schedule(schedule, costs)
  double peak_flops = 0;          // FLOP/s the costs were divided by (0: costs in GFLOP)

  // The stages pipeline rank r holds, in stage order.
  std::vector<int> stages_of_rank(int r) const;
  // The stage holding unit u (the embedding's on a tied model is stage 0).
  int stage_of_unit(int64_t u) const;
};

// Throws InputError (exit 2) naming the key and both numbers when the job can't be served:
// parallel.pp * virtual_stages > model.n_layers, a pp_layers list of the wrong length or sum,
// a micro-batch count the schedule can't serve, a broken schedule file (FILE:LINE and rule), a
// schedule file whose vocabulary passes disagree with parallel.vocab_parallel.
// `peak_flops` converts FLOPs to the simulator's seconds (0: costs in GFLOP instead).
PipelinePlan plan_pipeline(const JobConfig& cfg, double peak_flops = 0);

// What `strata schedule` prints: the stage placement (rank, units, blocks, GFLOP per
// micro-batch), then format_schedule_table, the simulated step time and bubble fraction, and
// the bubble of the ideal (p-1)/(m+p-1) beside it.
std::string format_pipeline_plan(const PipelinePlan& plan, const JobConfig& cfg);

}  // namespace strata
