#pragma once
// The pipeline executor: walks one pipeline rank's action list (parallel/schedule.h, lowered
// and validated) and nothing else. Communication lives here, the math behind StageRunner:
//
//   - Activations (F) and their gradients (B, I) move between stages as nonblocking point-to-
//     point messages over the pp communicator. Receives are posted ahead of need (the next
//     kPostAhead receive actions of the list, so a message that arrives early lands in its own
//     buffer and never waits in MPI's unexpected queue); a RECV_* action is where the rank
//     waits for it. Sends are posted by SEND_* right after the producing pass, polled at each
//     action, and waited for and freed where the schedule proves them received
//     (parallel/send_release.h), so what a rank holds does not depend on MPI's progress; every
//     handle is completed before run_step returns (all
//     of them: one handle left unwaited among several is how PyTorch's CPU pipelining
//     deadlocked, pytorch#132644).
//   - Neighbouring stages on the same rank (interleaved with pp = 1) hand over in memory.
//   - Every wait is under the collective watchdog's deadline; a timeout is rethrown naming the
//     action, stage, micro-batch and peer.
//   - REDUCE_GRAD(s) tells the runner stage s's gradients are final (it starts what reductions
//     remain); the pass before it on that stage is flagged `last` so reductions overlap.
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "core/memory.h"
#include "parallel/comm.h"
#include "parallel/schedule.h"

namespace strata {

// The math of the stages on this rank, by global stage index.
class StageRunner {
 public:
  virtual ~StageRunner() = default;
  // Floats in one activation (or activation gradient) message of `stage` (its input and output
  // have the same shape: [micro-batch tokens, dim]).
  virtual int64_t message_elems(int stage) const = 0;
  // in: nullptr on the first stage; out: nullptr on the last. `last`: the stage's last forward
  // of the step (the last stage's head gradient is final after it).
  virtual void forward(int stage, int mb, const float* in, float* out, bool last) = 0;
  // dy: nullptr on the last stage; dx: nullptr on the first. `last`: no later backward pass of
  // this step writes the stage's gradients.
  virtual void backward(int stage, int mb, const float* dy, float* dx, bool last) = 0;
  virtual void backward_input(int stage, int mb, const float* dy, float* dx) = 0;
  virtual void backward_weight(int stage, int mb, bool last) = 0;
  virtual void reduce_grads(int stage) = 0;

  // Vocabulary parallelism: collectives over every pipeline rank (the schedule holds them in the
  // same order on all), around the embedding and head shards every rank holds. Each is started
  // at its action and completed where its result is needed (launch/vocab_passes.h).
  // EMBED_F: the partial embeddings' sum started.
  virtual void embed_forward(int mb);
  // Stage 0's input [N, D] from EMBED_F(mb) (on stage 0's rank, before its F).
  virtual void embed_result(int mb, float* out);
  // S: `hn` the last stage's output (normed hidden states) on its rank, else nullptr.
  virtual void vocab_forward(int mb, const float* hn);
  // The gradient of hn [N, D] from S(mb) (on the last stage's rank, before its B or I).
  virtual void vocab_result(int mb, float* dhn);
  // T: this rank's head shard's weight gradient (local). `last`: the step's last T.
  virtual void vocab_weight(int mb, bool last);
  // EMBED_B: `dx` stage 0's input gradient on its rank (else nullptr) to every rank's shard.
  virtual void embed_backward(int mb, const float* dx, bool last);
  // Between actions: lets the collectives in flight move. At the step's end: completes them.
  virtual void poll_vocab() {}
  virtual void finish_vocab() {}
};

// What one step did on this rank, from the executor's own clocks.
struct PipelineStepStats {
  double compute_s = 0;  // in F/B/I/W passes
  double forward_s = 0, backward_s = 0, backward_input_s = 0, backward_weight_s = 0;
  double vocab_s = 0;       // in S, T, EMBED_F, EMBED_B (a non-last rank's wait for hn included)
  double vocab_wait_s = 0;  // waiting for a vocabulary collective's result before F(0) or the
                            // last stage's B/I, and completing them at the step's end
  double recv_wait_s = 0;   // blocked at RECV_* actions
  double send_wait_s = 0;   // completing sends at the end of the step
  double wall_s = 0;        // run_step from start to return
  int64_t bytes_sent = 0;   // point-to-point payload
  int64_t messages_sent = 0;
  int64_t sends_held_max = 0;  // send buffers held at once (released at fixed points)
};

class PipelineExecutor {
 public:
  static constexpr int kPostAhead = 2;

  // `pp` spans the pipeline ranks of this rank's (dp, sp) position, rank() = pipeline rank.
  PipelineExecutor(Schedule schedule, Comm& pp);
  ~PipelineExecutor();

  // One step: every action of this rank's list in order.
  void run_step(StageRunner& runner);
  const PipelineStepStats& last_step() const { return stats_; }
  const Schedule& schedule() const { return schedule_; }
  // The MPI tag of a message: distinct per (direction, stage, micro-batch mod 128) and below
  // MPI's guaranteed minimum tag bound (32767); equal tags between two ranks are matched in
  // posting order, which both sides share (micro-batches go through a stage in order).
  static int message_tag(bool backward, int stage, int micro_batch);

 private:
  // kVocab: the last stage's output for S; kEmbedGrad: stage 0's input gradient for EMBED_B.
  enum Dir { kForward = 0, kBackward = 1, kVocab = 2, kEmbedGrad = 3 };
  using Key = std::tuple<int, int, int>;  // (direction, stage, micro-batch)
  struct PostedRecv {
    FloatBuffer buf;
    CommHandle handle;
  };
  struct PendingSend {
    Action action;             // for the watchdog's message
    size_t release_after = 0;  // the action after which it is waited for and freed
    FloatBuffer buf;
    CommHandle handle;
  };

  void execute(const Action& a, size_t index, StageRunner& runner);
  void post_receives(size_t index, StageRunner& runner);
  FloatBuffer take_input(Dir dir, int stage, int mb, int peer, const char* action);
  void send(Dir dir, const Action& a, size_t index);
  void hand_over(Dir dir, int stage, int mb, FloatBuffer buf);  // to a stage on this rank
  void poll_sends(size_t index, StageRunner& runner);
  void finish_sends();
  void compute(const Action& a, size_t index, StageRunner& runner);
  void vocab_pass(const Action& a, size_t index, StageRunner& runner);
  bool on_rank(int stage) const { return schedule_.rank_of_stage(stage) == pp_.rank(); }
  FloatBuffer output_buffer(int stage, StageRunner& runner) const;
  FloatBuffer vocab_result(Dir dir, int mb, StageRunner& runner);
  void wait_named(CommHandle& h, const char* action, int stage, int mb, int peer);

  Schedule schedule_;
  Comm& pp_;
  const std::vector<Action>& actions_;
  std::vector<bool> last_forward_, last_backward_;  // per action index (T, EMBED_B: last of kind)
  bool vocab_ = false;                              // the schedule has vocabulary passes
  std::vector<size_t> recv_index_;                  // indices of RECV_* actions, in order
  std::vector<size_t> release_after_;               // per SEND_*: parallel/send_release.h
  size_t next_post_ = 0, consumed_ = 0;             // into recv_index_
  std::map<Key, PostedRecv> posted_;
  std::map<Key, FloatBuffer> inbox_;   // received (after its RECV) or handed over in memory
  std::map<Key, FloatBuffer> outbox_;  // produced, waiting for its SEND
  std::vector<PendingSend> sends_;
  PipelineStepStats stats_;
};

}  // namespace strata
