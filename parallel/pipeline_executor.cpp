#include "parallel/pipeline_executor.h"

#include <algorithm>
#include <utility>

#include "core/clock.h"
#include "core/error.h"
#include "parallel/send_release.h"
#include "parallel/watchdog.h"

namespace strata {

PipelineExecutor::PipelineExecutor(Schedule schedule, Comm& pp)
    : schedule_(std::move(schedule)),
      pp_(pp),
      actions_(schedule_.ranks.at(static_cast<size_t>(pp.rank()))) {
  STRATA_CHECK(schedule_.pp == pp_.size(), "a pipeline schedule for another number of ranks");
  const size_t n = actions_.size();
  last_forward_.assign(n, false);
  last_backward_.assign(n, false);
  std::vector<bool> seen_f(static_cast<size_t>(schedule_.stages), false);
  std::vector<bool> seen_b(static_cast<size_t>(schedule_.stages), false);
  for (size_t i = n; i-- > 0;) {  // from the end: the first one met is the stage's last
    const Action& a = actions_[i];
    const auto s = static_cast<size_t>(a.stage);
    if (a.type == ActionType::F && !seen_f[s]) last_forward_[i] = seen_f[s] = true;
    if ((a.type == ActionType::B || a.type == ActionType::W) && !seen_b[s])
      last_backward_[i] = seen_b[s] = true;
  }
  bool seen_t = false, seen_eb = false;
  for (size_t i = n; i-- > 0;) {
    if (actions_[i].type == ActionType::T && !seen_t) last_backward_[i] = seen_t = true;
    if (actions_[i].type == ActionType::EMBED_B && !seen_eb) last_backward_[i] = seen_eb = true;
  }
  for (size_t i = 0; i < n; ++i) {
    if (actions_[i].type == ActionType::RECV_F || actions_[i].type == ActionType::RECV_B)
      recv_index_.push_back(i);
    vocab_ = vocab_ || is_vocab(actions_[i].type);
  }
  release_after_ = send_release_points(schedule_, pp_.rank());
}

void StageRunner::embed_forward(int) {
  throw StrataError("pipeline: this runner has no vocabulary passes (EMBED_F)");
}
void StageRunner::embed_result(int, float*) {
  throw StrataError("pipeline: this runner has no vocabulary passes (EMBED_F)");
}
void StageRunner::vocab_forward(int, const float*) {
  throw StrataError("pipeline: this runner has no vocabulary passes (S)");
}
void StageRunner::vocab_result(int, float*) {
  throw StrataError("pipeline: this runner has no vocabulary passes (S)");
}
void StageRunner::vocab_weight(int, bool) {
  throw StrataError("pipeline: this runner has no vocabulary passes (T)");
}
void StageRunner::embed_backward(int, const float*, bool) {
  throw StrataError("pipeline: this runner has no vocabulary passes (EMBED_B)");
}

PipelineExecutor::~PipelineExecutor() = default;

int PipelineExecutor::message_tag(bool backward, int stage, int micro_batch) {
  return ((backward ? 1 : 0) * 64 + stage % 64) * 128 + micro_batch % 128;
}

void PipelineExecutor::run_step(StageRunner& runner) {
  const auto t0 = Clock::now();
  stats_ = PipelineStepStats{};
  next_post_ = consumed_ = 0;
  for (size_t i = 0; i < actions_.size(); ++i) {
    post_receives(i, runner);
    execute(actions_[i], i, runner);
    poll_sends(i, runner);
  }
  if (vocab_) {
    const auto tv = Clock::now();
    runner.finish_vocab();
    stats_.vocab_wait_s += seconds_since(tv);
  }
  finish_sends();
  STRATA_CHECK(posted_.empty() && inbox_.empty() && outbox_.empty(),
               "pipeline: messages left over at the end of the step (the schedule is not "
               "lowered consistently)");
  stats_.wall_s = seconds_since(t0);
}

void PipelineExecutor::post_receives(size_t /*index*/, StageRunner& runner) {
  while (next_post_ < recv_index_.size() && next_post_ < consumed_ + kPostAhead) {
    const Action& a = actions_[recv_index_[next_post_++]];
    const bool bwd = a.type == ActionType::RECV_B;
    PostedRecv r;
    const int64_t n = runner.message_elems(a.stage);
    r.buf = FloatBuffer(n, MemCategory::comm);
    r.handle = pp_.irecv(r.buf.data(), n, a.peer, message_tag(bwd, a.stage, a.micro_batch));
    posted_.emplace(Key{bwd ? kBackward : kForward, a.stage, a.micro_batch}, std::move(r));
  }
}

void PipelineExecutor::wait_named(CommHandle& h, const char* action, int stage, int mb, int peer) {
  try {
    h.wait();
  } catch (const CollectiveTimeout& e) {
    throw CollectiveTimeout(std::string("pipeline ") + action + " of stage " +
                            std::to_string(stage) + " micro-batch " + std::to_string(mb) +
                            " (pp rank " + std::to_string(pp_.rank()) + ", peer pp rank " +
                            std::to_string(peer) + "): " + e.what());
  }
}

void PipelineExecutor::execute(const Action& a, size_t index, StageRunner& runner) {
  switch (a.type) {
    case ActionType::F:
    case ActionType::B:
    case ActionType::I:
    case ActionType::W: {
      const auto t0 = Clock::now();
      const double waited = stats_.vocab_wait_s;
      compute(a, index, runner);
      const double dt = seconds_since(t0) - (stats_.vocab_wait_s - waited);
      stats_.compute_s += dt;
      (a.type == ActionType::F   ? stats_.forward_s
       : a.type == ActionType::B ? stats_.backward_s
       : a.type == ActionType::I ? stats_.backward_input_s
                                 : stats_.backward_weight_s) += dt;
      return;
    }
    case ActionType::SEND_F:
      return send(kForward, a, index);
    case ActionType::SEND_B:
      return send(kBackward, a, index);
    case ActionType::RECV_F:
    case ActionType::RECV_B: {
      const Dir dir = a.type == ActionType::RECV_B ? kBackward : kForward;
      auto it = posted_.find(Key{dir, a.stage, a.micro_batch});
      STRATA_CHECK(it != posted_.end(), "pipeline: a receive that was never posted");
      const auto t0 = Clock::now();
      wait_named(it->second.handle, dir == kForward ? "RECV_F" : "RECV_B", a.stage, a.micro_batch,
                 a.peer);
      stats_.recv_wait_s += seconds_since(t0);
      inbox_.emplace(it->first, std::move(it->second.buf));
      posted_.erase(it);
      ++consumed_;
      return;
    }
    case ActionType::REDUCE_GRAD:
      return runner.reduce_grads(a.stage);
    case ActionType::S:
    case ActionType::T:
    case ActionType::EMBED_F:
    case ActionType::EMBED_B: {
      const auto t0 = Clock::now();
      vocab_pass(a, index, runner);
      stats_.vocab_s += seconds_since(t0);
      return;
    }
  }
}

// The vocabulary passes' data: stage 0's input comes from EMBED_F (taken by its F) and its
// input gradient goes to EMBED_B; the last stage's output goes to S and its gradient comes from
// it (taken by its B or I). On other ranks they only take part in the collectives.
void PipelineExecutor::vocab_pass(const Action& a, size_t index, StageRunner& runner) {
  const int mb = a.micro_batch, last = schedule_.stages - 1;
  switch (a.type) {
    case ActionType::EMBED_F:
      return runner.embed_forward(mb);
    case ActionType::S: {
      FloatBuffer hn = on_rank(last) ? take_input(kVocab, last, mb, -1, "S") : FloatBuffer();
      runner.vocab_forward(mb, on_rank(last) ? hn.data() : nullptr);
      return;
    }
    case ActionType::T:
      return runner.vocab_weight(mb, last_backward_[index]);
    case ActionType::EMBED_B: {
      FloatBuffer dx = on_rank(0) ? take_input(kEmbedGrad, 0, mb, -1, "EMBED_B") : FloatBuffer();
      runner.embed_backward(mb, on_rank(0) ? dx.data() : nullptr, last_backward_[index]);
      return;
    }
    default:
      return;
  }
}

// F, B and I: inputs from the inbox, outputs to the outbox (or straight to a local stage).
void PipelineExecutor::compute(const Action& a, size_t index, StageRunner& runner) {
  const int s = a.stage, mb = a.micro_batch, last = schedule_.stages - 1;
  if (a.type == ActionType::W) return runner.backward_weight(s, mb, last_backward_[index]);
  // With vocabulary passes stage 0 has an input (EMBED_F's) and an input gradient (for
  // EMBED_B), the last stage an output (for S) and an output gradient (S's).
  const bool has_in = s != 0 || vocab_, has_out = s != last || vocab_;
  if (a.type == ActionType::F) {
    FloatBuffer in = s == 0 && vocab_ ? vocab_result(kForward, mb, runner)
                     : has_in         ? take_input(kForward, s, mb, a.peer, "F")
                                      : FloatBuffer();
    FloatBuffer out = has_out ? output_buffer(s, runner) : FloatBuffer();
    runner.forward(s, mb, has_in ? in.data() : nullptr, has_out ? out.data() : nullptr,
                   last_forward_[index]);
    if (s != last)
      hand_over(kForward, s + 1, mb, std::move(out));
    else if (vocab_)
      inbox_.emplace(Key{kVocab, last, mb}, std::move(out));
    return;
  }
  FloatBuffer dy = s == last && vocab_ ? vocab_result(kBackward, mb, runner)
                   : has_out           ? take_input(kBackward, s, mb, a.peer, "B")
                                       : FloatBuffer();
  FloatBuffer dx = has_in ? output_buffer(s, runner) : FloatBuffer();
  const float* dyp = has_out ? dy.data() : nullptr;
  float* dxp = has_in ? dx.data() : nullptr;
  if (a.type == ActionType::B)
    runner.backward(s, mb, dyp, dxp, last_backward_[index]);
  else
    runner.backward_input(s, mb, dyp, dxp);
  if (s != 0)
    hand_over(kBackward, s - 1, mb, std::move(dx));
  else if (vocab_)
    inbox_.emplace(Key{kEmbedGrad, 0, mb}, std::move(dx));
}

// Stage 0's input (kForward) or the last stage's output gradient (kBackward) from the
// vocabulary collective that made it: a wait, timed apart from the pass that needs it.
FloatBuffer PipelineExecutor::vocab_result(Dir dir, int mb, StageRunner& runner) {
  const auto t0 = Clock::now();
  FloatBuffer buf(runner.message_elems(0), MemCategory::comm);
  if (dir == kForward)
    runner.embed_result(mb, buf.data());
  else
    runner.vocab_result(mb, buf.data());
  stats_.vocab_wait_s += seconds_since(t0);
  return buf;
}

FloatBuffer PipelineExecutor::output_buffer(int stage, StageRunner& runner) const {
  return FloatBuffer(runner.message_elems(stage), MemCategory::comm);
}

FloatBuffer PipelineExecutor::take_input(Dir dir, int stage, int mb, int /*peer*/,
                                         const char* action) {
  auto it = inbox_.find(Key{dir, stage, mb});
  if (it == inbox_.end())
    throw StrataError(std::string("pipeline: ") + action + " of stage " + std::to_string(stage) +
                      " micro-batch " + std::to_string(mb) + " has no input (no receive or " +
                      "local hand-over precedes it in the schedule)");
  FloatBuffer b = std::move(it->second);
  inbox_.erase(it);
  return b;
}

// A produced message for stage `to`: in memory when that stage is on this rank, else it waits
// in the outbox for its SEND (keyed by the receiving stage, as the tag is).
void PipelineExecutor::hand_over(Dir dir, int to, int mb, FloatBuffer buf) {
  if (schedule_.rank_of_stage(to) == pp_.rank())
    inbox_.emplace(Key{dir, to, mb}, std::move(buf));
  else
    outbox_.emplace(Key{dir, to, mb}, std::move(buf));
}

void PipelineExecutor::send(Dir dir, const Action& a, size_t index) {
  const int to = dir == kForward ? a.stage + 1 : a.stage - 1;
  auto it = outbox_.find(Key{dir, to, a.micro_batch});
  STRATA_CHECK(it != outbox_.end(), "pipeline: a send before the pass producing its data");
  PendingSend p;
  p.action = a;
  p.release_after = release_after_[index];
  p.buf = std::move(it->second);
  outbox_.erase(it);
  const int64_t n = p.buf.size();
  p.handle = pp_.isend(p.buf.data(), n, a.peer, message_tag(dir == kBackward, to, a.micro_batch));
  stats_.bytes_sent += n * static_cast<int64_t>(sizeof(float));
  ++stats_.messages_sent;
  sends_.push_back(std::move(p));
  stats_.sends_held_max = std::max<int64_t>(stats_.sends_held_max, std::ssize(sends_));
}

void PipelineExecutor::poll_sends(size_t index, StageRunner& runner) {
  if (vocab_) runner.poll_vocab();
  // MPI moves a nonblocking message only inside MPI calls: a poll at every action keeps the
  // rendezvous of large messages going while this rank computes.
  for (auto& p : sends_) p.handle.test();
  for (auto& [key, r] : posted_) r.handle.test();
  // A send is released where the schedule proves it received (parallel/send_release.h), not
  // when a test finds it done: the buffers a rank holds are then the same every run. The wait
  // returns at once (the receiver has the data).
  std::erase_if(sends_, [&](PendingSend& p) {
    if (p.release_after > index) return false;
    wait_named(p.handle, p.action.type == ActionType::SEND_F ? "SEND_F" : "SEND_B", p.action.stage,
               p.action.micro_batch, p.action.peer);
    return true;
  });
}

void PipelineExecutor::finish_sends() {
  const auto t0 = Clock::now();
  for (auto& p : sends_)
    wait_named(p.handle, p.action.type == ActionType::SEND_F ? "SEND_F" : "SEND_B", p.action.stage,
               p.action.micro_batch, p.action.peer);
  sends_.clear();
  stats_.send_wait_s += seconds_since(t0);
}

}  // namespace strata
