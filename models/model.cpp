#include "models/model.h"

#include <algorithm>
#include <cstring>

#include "core/clock.h"
#include "core/gemm.h"
#include "models/cross_entropy.h"
#include "models/embedding.h"
#include "models/rmsnorm.h"

namespace strata {

namespace {
// Rows of logits materialised at once by the head: bounds that buffer to kHeadRows * V floats.
constexpr int64_t kHeadRows = 1024;
}  // namespace

Model::Model(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  const int64_t V = cfg_.vocab_size, D = cfg_.dim;
  units_.emplace_back("embed");
  units_.back().add("model.embed_tokens.weight", {V, D}, 0.02f, true);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    blocks_.emplace_back(cfg_, i);
    units_.emplace_back("layers." + std::to_string(i));
    blocks_.back().declare(units_.back());
  }
  units_.emplace_back("head");
  units_.back().add("model.norm.weight", {D}, 0.f, false);
  if (!cfg_.tie_embeddings) units_.back().add("lm_head.weight", {V, D}, 0.02f, true);
  for (auto& u : units_) u.allocate();
}

int64_t Model::num_parameters() const {
  int64_t n = 0;
  for (const auto& u : units_) n += u.numel();
  return n;
}

void Model::init(uint64_t seed) {
  for (auto& u : units_) u.init(seed);
}

void Model::zero_grads() {
  for (auto& u : units_) u.grads().zero();
}

const float* Model::output_weight() const {
  return cfg_.tie_embeddings
             ? units_.front().params().data()
             : units_.back().params().data() + units_.back().find("lm_head.weight").offset;
}

float* Model::output_weight_grad() {
  return cfg_.tie_embeddings
             ? units_.front().grads().data()
             : units_.back().grads().data() + units_.back().find("lm_head.weight").offset;
}

double Model::head_loss(const float* h, const int32_t* targets, int64_t N, float loss_scale,
                        float* dh) {
  const int64_t D = cfg_.dim, V = cfg_.vocab_size;
  ParamUnit& hu = units_.back();
  const float* g = hu.params().data() + hu.find("model.norm.weight").offset;
  float* dg = hu.grads().data() + hu.find("model.norm.weight").offset;
  const float* Wout = output_weight();
  const int64_t rows = std::min(N, kHeadRows);
  FloatBuffer hn(rows * D, MemCategory::activations);            // [rows, D] RMSNorm(h; g_final)
  FloatBuffer inv(rows, MemCategory::activations);               // [rows]
  FloatBuffer logits(rows * V, MemCategory::activations);        // [rows, V], then dlogits in place
  FloatBuffer dhn(dh ? rows * D : 0, MemCategory::activations);  // [rows, D]
  double loss = 0;
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t n = std::min(rows, N - r0);
    rmsnorm_forward(h + r0 * D, g, hn.data(), inv.data(), n, D, cfg_.norm_eps);
    linear_forward(hn.data(), Wout, logits.data(), n, V, D);
    loss += cross_entropy_forward_backward(logits.data(), targets + r0,
                                           dh ? logits.data() : nullptr, n, V, loss_scale);
    if (!dh) continue;
    linear_backward_input(logits.data(), Wout, dhn.data(), n, V, D);
    linear_backward_weight(logits.data(), hn.data(), output_weight_grad(), n, V, D);
    rmsnorm_backward(h + r0 * D, g, inv.data(), dhn.data(), dh + r0 * D, dg, n, D);
  }
  return loss;
}

double Model::forward_backward(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                               float loss_scale, ActivationStore& store, int64_t micro_batch,
                               BlockHooks* hooks) {
  const int64_t N = s.tokens(), D = cfg_.dim, L = cfg_.n_layers;
  BlockHooks none;
  BlockHooks& hk = hooks ? *hooks : none;
  FloatBuffer h(N * D, MemCategory::activations);     // [N, D] residual stream
  FloatBuffer next(N * D, MemCategory::activations);  // [N, D]

  hk.before_forward(0);
  embedding_forward(units_.front().params().data(), tokens, h.data(), N, D);
  hk.after_forward(0);
  for (int64_t i = 0; i < L; ++i) {
    const int64_t ui = i + 1;
    hk.before_forward(ui);
    SavedTensors saved;
    const auto t0 = Clock::now();
    blocks_[i].forward(units_[ui], units_[ui].params().data(), h.data(), next.data(), s, saved);
    store.record_forward(i, seconds_since(t0), saved.bytes(), saved.buffer("x")->capacity_bytes());
    store.save(micro_batch, i, std::move(saved));
    std::swap(h, next);
    hk.after_forward(ui);
  }

  if (L > 0) store.prefetch(micro_batch, L - 1);  // overlaps the head (swap only)
  hk.before_forward(L + 1);
  hk.before_backward(L + 1);
  FloatBuffer dh(N * D, MemCategory::activations);  // [N, D]
  const double loss = head_loss(h.data(), targets, N, loss_scale, dh.data());
  hk.after_backward(L + 1);
  h.reset();

  for (int64_t i = L - 1; i >= 0; --i) {
    const int64_t ui = i + 1;
    hk.before_backward(ui);
    const float* w = units_[ui].params().data();
    SavedTensors saved = store.take(micro_batch, i, [&](const float* x, SavedTensors& out) {
      blocks_[i].forward(units_[ui], w, x, next.data(), s, out);
    });
    // Swapped activations of the next block to run backward come back in the order that block
    // needs them, as this one frees memory: its MLP tensors once this block's MLP half is done,
    // the rest once its attention core is done; both overlap what remains of this backward (a
    // no-op under keep/recompute).
    const Block::BackwardPoints at{[&] {
                                     if (i > 0)
                                       store.prefetch(micro_batch, i - 1,
                                                      &Block::mlp_saved_names());
                                   },
                                   [&] {
                                     if (i > 0) store.prefetch(micro_batch, i - 1);
                                   }};
    const auto t0 = Clock::now();
    blocks_[i].backward(units_[ui], w, units_[ui].grads().data(), saved, dh.data(), next.data(), s,
                        &at);
    store.record_backward(i, seconds_since(t0));
    std::swap(dh, next);
    hk.after_backward(ui);
  }
  hk.before_backward(0);
  embedding_backward(tokens, dh.data(), units_.front().grads().data(), N, D);
  hk.after_backward(0);
  return loss;
}

double Model::forward_loss(const int32_t* tokens, const int32_t* targets, const BlockShape& s,
                           int64_t* counted, BlockHooks* hooks) {
  const int64_t N = s.tokens(), D = cfg_.dim;
  BlockHooks none;
  BlockHooks& hk = hooks ? *hooks : none;
  FloatBuffer h(N * D, MemCategory::activations), next(N * D, MemCategory::activations);
  hk.before_forward(0);
  embedding_forward(units_.front().params().data(), tokens, h.data(), N, D);
  hk.after_forward(0);
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    hk.before_forward(i + 1);
    SavedTensors scratch;  // dropped right away: evaluation keeps no activations
    blocks_[i].forward(units_[i + 1], units_[i + 1].params().data(), h.data(), next.data(), s,
                       scratch);
    std::swap(h, next);
    hk.after_forward(i + 1);
  }
  hk.before_forward(cfg_.n_layers + 1);
  const double loss = head_loss(h.data(), targets, N, 1.f, nullptr);
  hk.after_forward(cfg_.n_layers + 1);
  if (counted) *counted = std::count_if(targets, targets + N, [](int32_t t) { return t >= 0; });
  return loss;
}

}  // namespace strata
