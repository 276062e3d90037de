#include "models/model_stage.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "core/clock.h"
#include "core/error.h"
#include "models/embedding.h"
#include "models/rmsnorm.h"

namespace strata {

namespace {
BlockHooks& hooks_of(const StageContext& c) {
  static BlockHooks none;
  return c.hooks ? *c.hooks : none;
}
}  // namespace

ModelStage::ModelStage(Model& model, int64_t first_unit, int64_t end_unit)
    : model_(model), first_(first_unit), end_(end_unit) {
  const int64_t U = static_cast<int64_t>(model_.units().size());
  STRATA_CHECK(0 <= first_ && first_ < end_ && end_ <= U, "a stage's unit range is out of order");
  for (int64_t u = first_; u < end_; ++u)
    STRATA_CHECK(model_.holds(u), "a stage's unit is not allocated in this process");
}

int64_t ModelStage::end_block() const { return std::min<int64_t>(end_, model_.n_blocks() + 1) - 1; }

// The embedding (first stage) and the stage's blocks into a or b; returns the one holding the
// output. Training saves each block's activations through the store; evaluation drops them.
const float* ModelStage::blocks_forward(const StageContext& c, const MicroBatch& mb, const float* x,
                                        FloatBuffer& a, FloatBuffer& b, bool train) {
  BlockHooks& hk = hooks_of(c);
  const int64_t N = c.shape.tokens(), D = model_.config().dim;
  auto& units = model_.units();
  const float* in = x;
  if (is_first()) {
    hk.before(0, UnitPass::forward);
    if (end_ > 1) hk.prefetch(1);
    embedding_forward(units[0].params().data(), mb.tokens, a.data(), N, D);
    hk.after(0, UnitPass::forward);
    in = a.data();
  }
  for (int64_t i = first_block(); i < end_block(); ++i) {
    const int64_t ui = i + 1;
    hk.before(ui, UnitPass::forward);
    if (ui + 1 < end_) hk.prefetch(ui + 1);
    float* out = in == a.data() ? b.data() : a.data();
    SavedTensors saved;  // evaluation: dropped right away
    // The block saves no copy of its input (its backward does not read it): recompute, which
    // starts from it, keeps one, made before the forward as the first tensor of the set.
    const int64_t input_bytes = FloatBuffer::capacity_for(N * D, FloatBuffer::kPageAlign);
    if (train && c.store->policy(i) == ActivationPolicy::recompute)
      std::memcpy(saved.add_uninitialised(c.store->input_name(), N * D), in,
                  sizeof(float) * static_cast<size_t>(N * D));
    const auto t0 = Clock::now();
    model_.block(i).forward(units[ui], units[ui].params().data(), in, out, c.shape, saved);
    if (train) {
      const int64_t input_held = saved.has(c.store->input_name()) ? input_bytes : 0;
      c.store->record_forward(i, seconds_since(t0), saved.bytes() - input_held, input_bytes);
      c.store->save(mb.index, i, std::move(saved));
    }
    in = out;
    hk.after(ui, UnitPass::forward);
  }
  return in;
}

double ModelStage::forward(const StageContext& c, const MicroBatch& mb, const float* x, float* y) {
  const int64_t N = c.shape.tokens(), D = model_.config().dim;
  FloatBuffer a(N * D, MemCategory::activations), b(N * D, MemCategory::activations);  // [N, D]
  const float* in = blocks_forward(c, mb, x, a, b, /*train=*/true);
  if (has_head() && !is_last()) {
    final_norm(c, mb, in, y, /*train=*/true);
    return 0;
  }
  if (!is_last()) {
    std::memcpy(y, in, sizeof(float) * N * D);
    return 0;
  }
  // The backward of this micro-batch follows the head: its last block's swapped activations
  // start coming back now, overlapping the head.
  if (end_block() > first_block()) c.store->prefetch(mb.index, end_block() - 1);
  return head_pass(c, mb, in, /*train=*/true);
}

double ModelStage::head_pass(const StageContext& c, const MicroBatch& mb, const float* h,
                             bool train) {
  BlockHooks& hk = hooks_of(c);
  const int64_t N = c.shape.tokens(), D = model_.config().dim, head = model_.head_unit();
  const UnitPass pass = train ? UnitPass::backward : UnitPass::forward;
  hk.before(head, pass);
  if (train && end_block() > first_block()) hk.prefetch(end_block());  // the last block's unit
  double loss = 0;
  if (train) {
    InFlight& f = in_flight_[mb.index];
    f.dh = FloatBuffer(N * D, MemCategory::activations);  // [N, D]
    loss = model_.head_loss(h, mb.targets, N, c.loss_scale, f.dh.data());
  } else {
    loss = model_.head_loss(h, mb.targets, N, 1.f, nullptr);
  }
  hk.after(head, pass);
  return loss;
}

void ModelStage::backward(const StageContext& c, const MicroBatch& mb, const float* dy, float* dx) {
  run_backward(c, mb, dy, dx, UnitPass::backward);
}

void ModelStage::backward_input(const StageContext& c, const MicroBatch& mb, const float* dy,
                                float* dx) {
  run_backward(c, mb, dy, dx, UnitPass::backward_input);
}

void ModelStage::run_backward(const StageContext& c, const MicroBatch& mb, const float* dy,
                              float* dx, UnitPass pass) {
  BlockHooks& hk = hooks_of(c);
  const int64_t N = c.shape.tokens(), D = model_.config().dim;
  InFlight& f = in_flight_[mb.index];
  FloatBuffer head_dh;
  if (is_last()) {
    STRATA_CHECK(f.dh.size() > 0, "a backward on the last stage without its forward");
    head_dh = std::move(f.dh);
    dy = head_dh.data();
  } else {
    if (end_block() > first_block()) c.store->prefetch(mb.index, end_block() - 1);
    if (has_head()) {  // vocabulary parallel: dy is the gradient at the final norm's output
      head_dh = final_norm_backward(c, mb, dy, pass);
      dy = head_dh.data();
    }
  }
  if (pass == UnitPass::backward_input)
    f.deferred.resize(static_cast<size_t>(end_block() - first_block()));
  FloatBuffer a(N * D, MemCategory::activations), b(N * D, MemCategory::activations);  // [N, D]
  const float* cur = dy;
  for (int64_t i = end_block() - 1; i >= first_block(); --i) {
    float* out = cur == a.data() ? b.data() : a.data();
    block_backward(c, mb, i, cur, out, pass, f);
    cur = out;
  }
  head_dh.reset();
  if (!is_first()) {
    std::memcpy(dx, cur, sizeof(float) * N * D);
  } else if (pass == UnitPass::backward) {
    hk.before(0, UnitPass::backward);
    embedding_backward(mb.tokens, cur, model_.units()[0].grads().data(), N, D);
    hk.after(0, UnitPass::backward);
  } else {  // the embedding's gradient is a weight gradient: W runs it
    f.embed_dy = FloatBuffer(N * D, MemCategory::activations);
    std::memcpy(f.embed_dy.data(), cur, sizeof(float) * N * D);
  }
  if (pass == UnitPass::backward) in_flight_.erase(mb.index);
}

void ModelStage::final_norm(const StageContext& c, const MicroBatch& mb, const float* h, float* y,
                            bool train) {
  BlockHooks& hk = hooks_of(c);
  const int64_t N = c.shape.tokens(), D = model_.config().dim, head = model_.head_unit();
  const ParamUnit& hu = model_.units()[head];
  hk.before(head, UnitPass::forward);
  FloatBuffer inv(N, MemCategory::activations);  // [N]
  rmsnorm_forward(h, hu.params().data() + hu.find("model.norm.weight").offset, y, inv.data(), N, D,
                  model_.config().norm_eps);
  hk.after(head, UnitPass::forward);
  if (!train) return;
  InFlight& f = in_flight_[mb.index];
  f.h = FloatBuffer(N * D, MemCategory::activations);  // [N, D]
  std::memcpy(f.h.data(), h, sizeof(float) * N * D);
  f.inv = std::move(inv);
}

FloatBuffer ModelStage::final_norm_backward(const StageContext& c, const MicroBatch& mb,
                                            const float* dy, UnitPass pass) {
  BlockHooks& hk = hooks_of(c);
  const int64_t N = c.shape.tokens(), D = model_.config().dim, head = model_.head_unit();
  InFlight& f = in_flight_.at(mb.index);
  STRATA_CHECK(f.h.size() > 0, "a backward through the final norm without its forward");
  // The gain's gradient is tiny and needed by nothing else: B and I both compute it here.
  const UnitPass p = pass == UnitPass::backward ? UnitPass::backward : UnitPass::backward_input;
  hk.before(head, p);
  ParamUnit& hu = model_.units()[head];
  const int64_t off = hu.find("model.norm.weight").offset;
  FloatBuffer dh(N * D, MemCategory::activations);  // [N, D]
  rmsnorm_backward(f.h.data(), hu.params().data() + off, f.inv.data(), dy, dh.data(),
                   hu.grads().data() + off, N, D);
  hk.after(head, p);
  f.h.reset();
  f.inv.reset();
  return dh;
}

void ModelStage::block_backward(const StageContext& c, const MicroBatch& mb, int64_t i,
                                const float* dy, float* dx, UnitPass pass, InFlight& f) {
  BlockHooks& hk = hooks_of(c);
  auto& units = model_.units();
  const int64_t ui = i + 1;
  const bool more = i > first_block();  // a block before this one in the stage
  hk.before(ui, pass);
  if (ui - 1 >= first_) hk.prefetch(ui - 1);
  const float* w = units[ui].params().data();
  const Block& blk = model_.block(i);
  SavedTensors saved = c.store->take(mb.index, i, [&](const float* x, SavedTensors& out) {
    blk.forward(units[ui], w, x, dx, c.shape, out);  // dx is scratch until the backward writes it
  });
  // Swapped activations of the next block to run backward come back in the order that block
  // needs them, as this one frees memory: its MLP tensors once this block's MLP half is done,
  // the rest once its attention core is done; both overlap what remains of this backward (a
  // no-op under keep/recompute).
  const Block::BackwardPoints at{[&] {
                                   if (more)
                                     c.store->prefetch(mb.index, i - 1, &Block::mlp_saved_names());
                                 },
                                 [&] {
                                   if (more) c.store->prefetch(mb.index, i - 1);
                                 }};
  const auto t0 = Clock::now();
  float* dw = units[ui].grads().data();
  if (pass == UnitPass::backward)
    blk.backward(units[ui], w, dw, saved, dy, dx, c.shape, &at);
  else
    blk.backward_input(units[ui], w, dw, saved, dy, dx, c.shape,
                       f.deferred[static_cast<size_t>(i - first_block())], &at);
  c.store->record_backward(i, seconds_since(t0));
  hk.after(ui, pass);
}

void ModelStage::backward_weight(const StageContext& c, const MicroBatch& mb) {
  BlockHooks& hk = hooks_of(c);
  auto it = in_flight_.find(mb.index);
  STRATA_CHECK(it != in_flight_.end() && !it->second.deferred.empty(),
               "a weight-gradient pass without its input-gradient pass");
  InFlight& f = it->second;
  auto& units = model_.units();
  for (int64_t i = end_block() - 1; i >= first_block(); --i) {
    const int64_t ui = i + 1;
    hk.before(ui, UnitPass::backward_weight);
    Block::backward_weight(f.deferred[static_cast<size_t>(i - first_block())],
                           units[ui].grads().data());
    hk.after(ui, UnitPass::backward_weight);
  }
  if (is_first()) {
    const int64_t N = c.shape.tokens(), D = model_.config().dim;
    hk.before(0, UnitPass::backward_weight);
    embedding_backward(mb.tokens, f.embed_dy.data(), units[0].grads().data(), N, D);
    hk.after(0, UnitPass::backward_weight);
  }
  in_flight_.erase(it);
}

double ModelStage::forward_eval(const StageContext& c, const MicroBatch& mb, const float* x,
                                float* y) {
  const int64_t N = c.shape.tokens(), D = model_.config().dim;
  FloatBuffer a(N * D, MemCategory::activations), b(N * D, MemCategory::activations);  // [N, D]
  const float* in = blocks_forward(c, mb, x, a, b, /*train=*/false);
  if (is_last()) return head_pass(c, mb, in, /*train=*/false);
  if (has_head())
    final_norm(c, mb, in, y, /*train=*/false);
  else
    std::memcpy(y, in, sizeof(float) * N * D);
  return 0;
}

}  // namespace strata
