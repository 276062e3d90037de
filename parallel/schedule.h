#pragma once
// The pipeline schedule IR: per-rank lists of actions as plain data (docs/PIPELINE.md).
//
// A schedule has `stages` = pp * virtual_stages global stages; stage s lives on rank s % pp
// ("loop" placement, Megatron's interleaved layout: rank r holds stages r, r+pp, r+2pp, ...).
// With one stage per rank this is simply stage s on rank s.
//
// Generators (parallel/schedule_gen.h) emit compute actions only (F, B, I, W); the lowering pass
// (parallel/schedule_check.h) adds the point-to-point actions and REDUCE_GRAD. A schedule that
// holds any SEND/RECV/REDUCE_GRAD action counts as lowered, and the validator then demands the
// whole lowering (every cross-rank dependency through a receive, every stage reduced once).
//
// Communication actions name the stage on the rank that holds them:
//   SEND_F(s, mb)  after F(s, mb): the activation goes to stage s+1 on rank `peer`.
//   RECV_F(s, mb)  before F(s, mb): the activation comes from stage s-1 on rank `peer`.
//   SEND_B(s, mb)  after B/I(s, mb): the input gradient goes to stage s-1 on rank `peer`.
//   RECV_B(s, mb)  before B/I(s, mb): the output gradient comes from stage s+1 on rank `peer`.
// so SEND_F(s, mb) is matched by RECV_F(s+1, mb), and SEND_B(s, mb) by RECV_B(s-1, mb).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

enum class ActionType {
  F,            // forward of (stage, micro-batch)
  B,            // full backward (input and weight gradients)
  I,            // backward, input gradient only (zero-bubble split)
  W,            // backward, weight gradient only (zero-bubble split)
  SEND_F,       // send F's output activation to the next stage
  RECV_F,       // receive this stage's input activation from the previous stage
  SEND_B,       // send the input gradient to the previous stage
  RECV_B,       // receive this stage's output gradient from the next stage
  REDUCE_GRAD,  // the stage's gradients are final: reduce over dp (micro_batch unused)
  // Reserved for vocabulary parallelism (next issue): in the vocabulary and the CSV names, but
  // refused by the validator until an executor can run them.
  S,        // vocabulary-parallel head pass 1 (logit tile statistics, partial dX)
  T,        // vocabulary-parallel head pass 2 (weight gradient)
  EMBED_F,  // vocabulary-parallel embedding lookup
  EMBED_B,  // vocabulary-parallel embedding backward
};

inline constexpr int kNoMicroBatch = -1;  // REDUCE_GRAD's micro_batch
inline constexpr int kNoPeer = -1;        // peer of every non-communication action

struct Action {
  ActionType type = ActionType::F;
  int stage = 0;        // global stage index in [0, stages)
  int micro_batch = 0;  // in [0, micro_batches), kNoMicroBatch for REDUCE_GRAD
  int peer = kNoPeer;   // the other rank of a SEND_*/RECV_*

  bool operator==(const Action&) const = default;
};

struct Schedule {
  int pp = 1;                              // pipeline ranks
  int stages = 1;                          // pp * virtual stages
  int micro_batches = 1;                   // m
  std::vector<std::vector<Action>> ranks;  // ranks[r]: rank r's actions in execution order

  int virtual_stages() const { return stages / pp; }
  int rank_of_stage(int stage) const { return stage % pp; }  // loop placement
  bool operator==(const Schedule&) const = default;
};

// "F", "SEND_F", "REDUCE_GRAD", ... (the CSV and table spelling); the one enum <-> string map.
std::string_view action_name(ActionType type);
std::optional<ActionType> parse_action_name(std::string_view name);

bool is_compute(ActionType type);        // F, B, I, W
bool is_communication(ActionType type);  // SEND_F, RECV_F, SEND_B, RECV_B
bool is_reserved(ActionType type);       // S, T, EMBED_F, EMBED_B
bool is_lowered(const Schedule& schedule);

// PyTorch's _Action spelling: "<stage><name><micro_batch>", e.g. "2F5", "0SEND_B3",
// "1REDUCE_GRAD"; used by the table and by error messages.
std::string format_action(const Action& action);

// CSV form (docs/PIPELINE.md): a first line "# strata pipeline schedule: pp=P stages=S
// micro_batches=M", then the header "rank,index,action,stage,micro_batch,peer", then one row per
// action, grouped by rank in ascending order, index = position in the rank's list. micro_batch
// is empty for REDUCE_GRAD, peer empty for every non-communication action.
std::string write_schedule_csv(const Schedule& schedule);

// Strict parse of `text` (no validation beyond the format); errors are InputError
// "FILE:LINE: what was expected". `line_of`, when given, receives each action's source line.
Schedule parse_schedule_csv(const std::string& text, const std::string& file_name,
                            std::vector<std::vector<int>>* line_of = nullptr);

}  // namespace strata
