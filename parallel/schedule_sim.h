#pragma once
// Dependency-driven simulation of a pipeline schedule (docs/PIPELINE.md).
//
// Each rank runs its list in order; an action starts when the rank is free and its
// dependencies have finished: F(s, mb) needs F(s-1, mb) (through RECV_F once lowered), B/I(s, mb)
// needs F(s, mb) and the backward of (s+1, mb), W needs I, a receive needs its send (plus
// latency). Sends never wait for their receiver (they are nonblocking and buffered), receives
// block where they stand. The start times are the earliest the dependencies allow, so the
// makespan is that of an executor that follows the list and nothing else.
//
// Vocabulary passes (docs/PIPELINE.md, "Vocabulary passes"): EMBED_F, S and EMBED_B are
// collectives over all pp ranks that overlap compute, as the executor runs them
// (launch/vocab_passes.h): each rank runs its own part (its cost) when its list gets there and the
// data it reads is there, then goes on; the collective's result exists once every rank's part has
// ended, and only the passes that consume it wait for it. The data: every rank's S(mb) reads
// F(last, mb)'s output (broadcast), stage 0's rank's EMBED_B(mb) reads B/I(0, mb)'s; F(0, mb) needs
// EMBED_F(mb)'s result, B/I(last, mb) and T(mb) need S(mb)'s. T is local compute.
#include <string>
#include <vector>

#include "parallel/schedule.h"

namespace strata {

struct SimCosts {
  double forward = 1;          // F
  double backward = 2;         // B (input + weight gradients)
  double backward_input = 1;   // I
  double backward_weight = 1;  // W
  double send = 0;             // time a SEND_* occupies its rank
  double recv = 0;             // time a RECV_* occupies its rank once the message is there
  double latency = 0;          // from a send's end (or a producer's end, unlowered) to arrival
  double reduce_grad = 0;      // REDUCE_GRAD
  // Vocabulary passes, each one rank's shard of one micro-batch (the same on every rank).
  double vocab_s = 0.25;  // S: the shard's logits, the loss, the input gradient (collective)
  double vocab_t = 0.25;  // T: the shard's head weight gradient (local)
  double embed_f = 0;     // EMBED_F: the embedding lookup (collective)
  double embed_b = 0;     // EMBED_B: the embedding's gradient (collective)
  // Optional per-stage compute costs, indexed by global stage (empty: the scalar above for every
  // stage). Real stages differ (the head's GEMM sits on the last one, the embedding costs nothing),
  // and the bubble they leave is what a placement is judged by. A non-empty vector must have one
  // entry per stage of the simulated schedule.
  std::vector<double> stage_forward;
  std::vector<double> stage_backward;
  std::vector<double> stage_backward_input;
  std::vector<double> stage_backward_weight;
};

struct SimResult {
  double makespan = 0;                     // the simulated step time
  std::vector<double> busy;                // per rank: time in F/B/I/W and vocabulary passes
  double bubble_fraction = 0;              // 1 - sum(busy) / (ranks * makespan)
  std::vector<int> peak_in_flight;         // per rank: most micro-batches with F started and
                                           // their last backward (B or W) not finished
  std::vector<std::vector<double>> start;  // [rank][index], as the schedule's lists
  std::vector<std::vector<double>> finish;
};

// The time `action` occupies its rank (all ranks, for a collective), per `costs`.
double action_cost(const Action& action, const SimCosts& costs);

// Validates (validate_schedule), then simulates. A schedule that cannot make progress throws
// ScheduleRuleError naming every stuck rank, the action it waits at and what for (a dependency,
// or the ranks that never reach its collective), and the cycle of ranks waiting on each other.
SimResult simulate_schedule(const Schedule& schedule, const SimCosts& costs = {});

// One column per rank, one row per distinct start time (actions as "<stage><name><mb>", e.g.
// "1F3"; several actions starting together share a cell), then the summary: step time, bubble
// fraction, busy time and peak in-flight micro-batches per rank.
std::string format_schedule_table(const Schedule& schedule, const SimResult& result);

}  // namespace strata
