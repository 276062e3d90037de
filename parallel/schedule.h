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
// Vocabulary parallelism (Yeung et al. 2024; parallel/schedule_vocab.h, docs/PIPELINE.md
// "Vocabulary passes"): the embedding and the LM head + loss are split by vocabulary rows over
// all pipeline ranks. Every rank then runs, for every micro-batch, one EMBED_F, S, T and EMBED_B.
// S and T carry the last stage (the stage whose output S consumes), EMBED_F and EMBED_B stage 0
// (the stage whose input they produce / whose input gradient they consume), on every rank.
// EMBED_F, S and EMBED_B are collectives over all pp ranks; T is local compute.
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
  // Vocabulary parallelism: every rank's shard of the embedding and of the head + loss.
  S,        // collective: this shard's logits, softmax statistics over all shards, loss, dX
  T,        // local: this shard's head weight gradient (recomputes its logits)
  EMBED_F,  // collective: the embedding lookup of this shard's rows, summed over the ranks
  EMBED_B,  // collective: stage 0's input gradient to every rank, scattered into its rows
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

bool is_compute(ActionType type);           // F, B, I, W
bool is_communication(ActionType type);     // SEND_F, RECV_F, SEND_B, RECV_B
bool is_vocab(ActionType type);             // S, T, EMBED_F, EMBED_B
bool is_vocab_collective(ActionType type);  // EMBED_F, S, EMBED_B (over all pp ranks)
bool has_vocab_passes(const Schedule& schedule);
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
