#pragma once
// One training step of one rank, replayed for `strata plan`: the rank's actions of the lowered
// schedule in order (parallel/pipeline_executor.cpp), each pass as models/model_stage.cpp runs
// it (the residual stream's buffers, the blocks, the head and its loss tiles, the final norm of
// the vocabulary split), the ActivationStore's policy per block (keep / recompute / swap, the
// prefetches where the backward calls them), the pipeline messages (receives posted ahead,
// sends held until sent) and the vocabulary passes (launch/vocab_passes.cpp).
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "launch/job_config.h"
#include "launch/memory_plan_block.h"
#include "launch/memory_plan_zero.h"
#include "launch/pipeline_plan.h"

namespace strata {

struct StepReplayContext {
  const JobConfig* cfg = nullptr;
  const PipelinePlan* plan = nullptr;
  int pp_rank = 0, sp = 1;
  Ledger* ledger = nullptr;
  ZeroReplay* zero = nullptr;
  std::map<std::string, double>* comm = nullptr;  // bytes per axis
  // Swap writes: false, a set's writes land by the next block's save (a device that keeps up
  // with the forward); true, none lands before the backward reads it back (a slow device).
  bool slow_writes = false;
  int sp_rank = 0;  // LASP-2's backward holds one more buffer on every rank but the last
};

class StepReplay {
 public:
  explicit StepReplay(const StepReplayContext& c);
  void run();  // the step's actions, then the vocabulary passes' end of step

 private:
  struct Held {  // an ActivationStore entry
    SavedSet mem;
    std::vector<std::pair<std::string, double>> out;  // swapped: name, bytes on the tier
    bool recompute = false;
  };
  enum Dir { kForward, kBackward, kVocab, kEmbedGrad };
  using Key = std::pair<int, std::pair<int, int>>;  // dir, stage, micro-batch

  // Hooks (launch/train_hooks.h): the stop poll on the world with one stage, then ZeRO.
  void before(int64_t unit, UnitPass pass);
  void after(int64_t unit, UnitPass pass);
  void execute_forward(int s, int mb, bool last);
  // pass: UnitPass::backward (B) or backward_input (I, its weight GEMMs deferred to W)
  void execute_backward(int s, int mb, bool last, UnitPass pass);
  void forward(int s, int mb, bool last);
  void backward(int s, int mb, bool last, UnitPass pass);
  void backward_weight(int s, int mb);  // W: the deferred GEMMs run, their inputs go
  void blocks_forward(int s, int mb);
  void block_backward(int s, int mb, int64_t i, UnitPass pass);
  void head_loss(int64_t real, bool backward);
  void tile_pass(int64_t real);
  void fused_pass(int64_t real);
  void save(int mb, int64_t block, SavedSet&& set);
  void prefetch(int mb, int64_t block, bool mlp_only);
  SavedSet take(int mb, int64_t block);
  void retire_writes(size_t keep_sets);  // the oldest sets land until keep_sets are left
  void vocab_action(const Action& a, bool last);
  void finish_vocab();
  void vocab_finished_head(int mb);
  Ledger::Id comm_buffer();
  Ledger::Id take_input(Dir d, int stage, int mb);
  void hand_over(Dir d, int to, int mb, Ledger::Id buf);
  BlockDims dims(int64_t block) const;
  bool is_first(int s) const;
  bool has_head(int s) const;
  bool is_last(int s) const;
  int64_t first_block(int s) const;
  int64_t end_block(int s) const;

  StepReplayContext c_;
  Ledger& l_;
  int64_t N_ = 0, D_ = 0, L_ = 0, head_ = 0;
  bool vocab_ = false, last_ = false;
  std::map<std::pair<int, int64_t>, Held> store_;
  std::deque<std::vector<Ledger::Id>> writing_;  // swap writes in flight (io), per set
  std::map<int, Ledger::Id> dh_;  // last stage: the kept loss gradient per micro-batch
  // I to W, per (stage, micro-batch): what each block's deferred weight GEMMs hold, and stage 0's
  // input gradient for the embedding's (ModelStage::InFlight::deferred, embed_dy).
  std::map<std::pair<int, int>, std::map<int64_t, std::vector<Ledger::Id>>> deferred_;
  std::map<std::pair<int, int>, Ledger::Id> embed_dy_;
  std::map<int, std::pair<Ledger::Id, Ledger::Id>> norm_in_;  // vocab head stage: h, inv
  std::map<Key, Ledger::Id> inbox_, outbox_, posted_;
  // Pipeline sends posted, not yet found complete: the action after which they are, the buffer.
  std::vector<std::pair<size_t, Ledger::Id>> sending_;
  struct VocabHead {
    Ledger::Id hn = Ledger::kNone, partial = Ledger::kNone, lse = Ledger::kNone;
  };
  std::map<int, VocabHead> heads_;
  std::map<int, Ledger::Id> embeds_, embed_grads_;
};

}  // namespace strata
