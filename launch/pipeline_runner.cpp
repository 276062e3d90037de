#include "launch/pipeline_runner.h"

#include "core/error.h"

namespace strata {

TrainStageRunner::TrainStageRunner(Model& model, const PipelinePlan& plan, int pp_rank,
                                   ZeroEngine& zero, TrainerHooks& hooks, ActivationStore& store,
                                   VocabPasses* vocab)
    : plan_(plan), zero_(zero), hooks_(hooks), dim_(model.config().dim), vocab_(vocab) {
  for (int s : plan_.stages_of_rank(pp_rank)) {
    const StagePlan& sp = plan_.stages.at(static_cast<size_t>(s));
    // With the vocabulary split the embedding is no stage's: EMBED_F gives stage 0 its input.
    const int64_t first = vocab_ && sp.first_unit == 0 ? 1 : sp.first_unit;
    stages_.emplace(s, std::make_unique<ModelStage>(model, first, sp.end_unit));
  }
  ctx_.store = &store;
  ctx_.hooks = &hooks_;
}

void TrainStageRunner::begin_step(const BlockShape& shape, float loss_scale, const int32_t* tokens,
                                  const int32_t* targets) {
  ctx_.shape = shape;
  ctx_.loss_scale = loss_scale;
  tokens_ = tokens;
  targets_ = targets;
  loss_sum_ = 0;
  if (vocab_) vocab_->begin_step(shape.tokens(), loss_scale, tokens, targets);
}

bool TrainStageRunner::idle() const {
  for (const auto& [s, st] : stages_)
    if (!st->idle()) return false;
  return !vocab_ || vocab_->idle();
}

VocabPasses& TrainStageRunner::vocab() {
  STRATA_CHECK(vocab_, "pipeline: a vocabulary pass without parallel.vocab_parallel");
  return *vocab_;
}

void TrainStageRunner::embed_forward(int mb) { vocab().embed_forward(mb); }
void TrainStageRunner::embed_result(int mb, float* out) { vocab().embed_result(mb, out); }
void TrainStageRunner::vocab_result(int mb, float* dhn) { vocab().vocab_result(mb, dhn); }
void TrainStageRunner::vocab_forward(int mb, const float* hn) { vocab().vocab_forward(mb, hn); }
void TrainStageRunner::vocab_weight(int mb, bool) { vocab().vocab_weight(mb); }
void TrainStageRunner::embed_backward(int mb, const float* dx, bool) {
  vocab().embed_backward(mb, dx);
}

ModelStage& TrainStageRunner::stage(int s) {
  auto it = stages_.find(s);
  STRATA_CHECK(it != stages_.end(), "pipeline: an action for a stage this rank does not hold");
  return *it->second;
}

MicroBatch TrainStageRunner::micro_batch(int mb) const {
  const int64_t off = static_cast<int64_t>(mb) * ctx_.shape.tokens();
  return MicroBatch{mb, tokens_ + off, targets_ + off};
}

int64_t TrainStageRunner::message_elems(int /*stage*/) const {
  return ctx_.shape.tokens() * dim_;  // [micro-batch tokens, D] between any two stages
}

// `last` reaches the ZeRO engine through the hooks: the reductions of the stage's units start
// right after their last pass, overlapping the rest of the step.
void TrainStageRunner::forward(int s, int mb, const float* in, float* out, bool last) {
  hooks_.set_last(last);
  loss_sum_ += stage(s).forward(ctx_, micro_batch(mb), in, out);
  hooks_.set_last(false);
}

void TrainStageRunner::backward(int s, int mb, const float* dy, float* dx, bool last) {
  hooks_.set_last(last);
  stage(s).backward(ctx_, micro_batch(mb), dy, dx);
  hooks_.set_last(false);
}

void TrainStageRunner::backward_input(int s, int mb, const float* dy, float* dx) {
  stage(s).backward_input(ctx_, micro_batch(mb), dy, dx);
}

void TrainStageRunner::backward_weight(int s, int mb, bool last) {
  hooks_.set_last(last);
  stage(s).backward_weight(ctx_, micro_batch(mb));
  hooks_.set_last(false);
}

void TrainStageRunner::reduce_grads(int s) {
  const ModelStage& st = stage(s);
  zero_.finish_grads(st.first_unit(), st.end_unit());
}

double TrainStageRunner::eval_micro_batch(Comm& pp, const BlockShape& shape, const int32_t* tokens,
                                          const int32_t* targets) {
  StageContext c = ctx_;
  c.shape = shape;
  c.loss_scale = 1.f;
  const MicroBatch mb{0, tokens, targets};
  const int64_t n = shape.tokens() * dim_;
  const int stages = static_cast<int>(plan_.stages.size()), me = pp.rank();
  FloatBuffer x, y;  // [N, D] the chain's activation into and out of a stage
  double loss = 0;
  const bool first_here = plan_.stages.front().rank == me,
             last_here = plan_.stages.back().rank == me;
  if (vocab_) {  // every rank embeds its rows; stage 0 gets the sum
    x = FloatBuffer(first_here ? n : 0, MemCategory::comm);
    vocab_->eval_embed(tokens, shape.tokens(), first_here ? x.data() : nullptr);
  }
  for (int s = 0; s < stages; ++s) {
    const int at = plan_.stages[static_cast<size_t>(s)].rank;
    if (at != me) continue;
    if (s > 0) {
      const int from = plan_.stages[static_cast<size_t>(s - 1)].rank;
      if (from != me) {
        x = FloatBuffer(n, MemCategory::comm);
        pp.recv(x.data(), n, from, PipelineExecutor::message_tag(false, s, 0));
      }
    }
    const bool in = s > 0 || vocab_, out = s + 1 < stages || vocab_;
    if (out) y = FloatBuffer(n, MemCategory::comm);
    loss += stage(s).forward_eval(c, mb, in ? x.data() : nullptr, out ? y.data() : nullptr);
    if (s + 1 < stages) {
      const int to = plan_.stages[static_cast<size_t>(s + 1)].rank;
      if (to != me) pp.send(y.data(), n, to, PipelineExecutor::message_tag(false, s + 1, 0));
      x = std::move(y);
    }
  }
  // The loss through every rank's rows of the head: the same on every rank.
  if (vocab_) loss = vocab_->eval_loss(last_here ? y.data() : nullptr, targets, shape.tokens());
  return loss;
}

}  // namespace strata
