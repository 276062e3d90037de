#include "models/block.h"

#include <cmath>
#include <string>

#include "core/error.h"
#include "core/gemm.h"
#include "core/linear_attention.h"
#include "core/profile.h"
#include "core/rope.h"
#include "models/rmsnorm.h"
#include "models/swiglu.h"
#include "parallel/self_comm.h"
#include "parallel/sequence.h"

namespace strata {

namespace {

// out[j] += sum_n a[n,j] * b[n,j], b as stored (fp32 or bf16); columns in parallel, rows in
// order (thread-count independent).
template <class S>
void accumulate_column_products(const float* a, const S* b, float* out, int64_t N, int64_t D) {
  ProfScope prof_scope(ProfOp::elementwise);
  constexpr int64_t kCols = 16;
#pragma omp parallel for schedule(static)
  for (int64_t j0 = 0; j0 < D; j0 += kCols) {
    const int64_t j1 = j0 + kCols < D ? j0 + kCols : D;
    float acc[kCols] = {};
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += a[n * D + j] * stored_value(b[n * D + j]);
    for (int64_t j = j0; j < j1; ++j) out[j] += acc[j - j0];
  }
}

// The mixers always run the sequence-parallel ops: a block alone on its sequence uses them
// over a size-1 group, which is exactly the single-rank math (one code path, any layout).
Comm& sequence_group(const BlockShape& s) {
  static SelfComm alone("sp");
  return s.sp ? *s.sp : alone;
}

// Activation buffers below are written in full by their producer before any read (a GEMM with
// beta 0, a norm, a copy): they are not zeroed first (FloatBuffer::uninitialised).
SharedBuffer uninitialised_shared(int64_t n) {
  return std::make_shared<FloatBuffer>(FloatBuffer::uninitialised(n, MemCategory::activations));
}

void add_inplace(float* y, const float* x, int64_t n) {
  ProfScope prof_scope(ProfOp::elementwise);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

// Row-wise multiply by a [D] gain: z[n,j] = u[n,j] * g[j].
void scale_columns(const float* u, const float* g, float* z, int64_t N, int64_t D) {
  ProfScope prof_scope(ProfOp::elementwise);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < D; ++j) z[n * D + j] = u[n * D + j] * g[j];
}

}  // namespace

Block::Block(const ModelConfig& cfg, int64_t index)
    : cfg_(cfg),
      index_(index),
      mixer_(cfg.mixer(index)),
      D_(cfg.dim),
      H_(cfg.n_heads),
      Hkv_(cfg.mixer(index) == 'S' ? cfg.n_kv_heads : cfg.n_heads),
      dh_(cfg.head_dim()),
      F_(cfg.ffn_dim),
      gammas_(linear_attention_gammas(cfg.n_heads, cfg.decay == Decay::retnet)) {}

void Block::declare(ParamUnit& u) const {
  const std::string p = "model.layers." + std::to_string(index_) + ".";
  const float std_in = 0.02f;
  const float std_out = 0.02f / std::sqrt(2.f * static_cast<float>(cfg_.n_layers));
  u.add(p + "input_layernorm.weight", {D_}, 0.f, false);
  u.add(p + "self_attn.q_proj.weight", {H_ * dh_, D_}, std_in, true);
  u.add(p + "self_attn.k_proj.weight", {Hkv_ * dh_, D_}, std_in, true);
  u.add(p + "self_attn.v_proj.weight", {Hkv_ * dh_, D_}, std_in, true);
  u.add(p + "self_attn.o_proj.weight", {D_, H_ * dh_}, std_out, true);
  if (mixer_ == 'L') u.add(p + "self_attn.out_norm.weight", {D_}, 0.f, false);
  u.add(p + "post_attention_layernorm.weight", {D_}, 0.f, false);
  u.add(p + "mlp.gate_proj.weight", {F_, D_}, std_in, true);
  u.add(p + "mlp.up_proj.weight", {F_, D_}, std_in, true);
  u.add(p + "mlp.down_proj.weight", {D_, F_}, std_out, true);
}

#define W(name) (w + u.find(name).offset)
#define OFF(name) (u.find(name).offset)

Operand Block::saved_operand(const SavedTensors& saved, const std::string& name) const {
  return operand_of(cfg_.precision, saved.buffer(name));
}

void Block::save_normalised(SavedTensors& saved, const char* rows, const char* stats,
                            const float* x, int64_t N, int64_t C) const {
  const Precision p = cfg_.precision;
  float* inv = saved.add(stats, N);                                     // [N]
  float* xn = saved.add_uninitialised(rows, operand_floats(p, N * C));  // [N, C]
  if (p == Precision::fp32)
    rmsnorm_normalise(x, xn, inv, N, C, cfg_.norm_eps);
  else
    rmsnorm_normalise(x, reinterpret_cast<bf16*>(xn), inv, N, C, cfg_.norm_eps);
}

// save_normalised and norm_operand in one pass over x (the same bits).
Operand Block::norm_forward(SavedTensors& saved, const char* rows, const char* stats,
                            const float* x, const float* g, int64_t N, int64_t C) const {
  const Precision p = cfg_.precision;
  float* inv = saved.add(stats, N);                                     // [N]
  float* xn = saved.add_uninitialised(rows, operand_floats(p, N * C));  // [N, C]
  SharedBuffer y = uninitialised_shared(operand_floats(p, N * C));      // [N, C]
  if (p == Precision::fp32)
    rmsnorm_normalise_gain(x, g, xn, y->data(), inv, N, C, cfg_.norm_eps);
  else
    rmsnorm_normalise_gain(x, g, reinterpret_cast<bf16*>(xn), as_bf16(*y), inv, N, C,
                           cfg_.norm_eps);
  return operand_of(p, y);
}

Operand Block::norm_operand(const SavedTensors& saved, const char* rows, const float* g, int64_t N,
                            int64_t C) const {
  const Precision p = cfg_.precision;
  SharedBuffer y = uninitialised_shared(operand_floats(p, N * C));  // [N, C]
  if (p == Precision::fp32)
    rmsnorm_gain(saved.get(rows), g, y->data(), N, C);
  else
    rmsnorm_gain(reinterpret_cast<const bf16*>(saved.get(rows)), g, as_bf16(*y), N, C);
  return operand_of(p, y);
}

void Block::norm_backward(const SavedTensors& saved, const char* rows, const char* stats,
                          const float* g, const float* dy, float* dx, float* dg, int64_t N,
                          int64_t C, const float* residual) const {
  const float* xn = saved.get(rows);
  if (cfg_.precision == Precision::fp32)
    rmsnorm_backward_normalised(xn, g, saved.get(stats), dy, dx, dg, N, C, residual);
  else
    rmsnorm_backward_normalised(reinterpret_cast<const bf16*>(xn), g, saved.get(stats), dy, dx, dg,
                                N, C, residual);
}

void Block::forward(const ParamUnit& u, const float* w, const float* x, float* y,
                    const BlockShape& s, SavedTensors& saved) const {
  const int64_t N = s.tokens();
  const UnitGemms gm(cfg_.precision, u, w);
  // [N, D] a = RMSNorm(x; g_in), its rows xn1 saved
  Operand A = norm_forward(saved, "xn1", "inv1", x, W("input_layernorm.weight"), N, D_);
  // h1 = x + mixer(a) [N, D], the MLP's input and residual, formed in y (not saved): the MLP
  // then adds its output to it in place
  if (mixer_ == 'L')
    linear_mixer_forward(u, w, gm, A, y, s, saved);
  else
    softmax_mixer_forward(u, w, gm, A, y, s, saved);
  A = Operand{};
  add_inplace(y, x, N * D_);
  mlp_forward(u, w, gm, y, N, saved);
}

void Block::mlp_forward(const ParamUnit& u, const float* w, const UnitGemms& gm, float* h1,
                        int64_t N, SavedTensors& saved) const {
  const Precision p = cfg_.precision;
  // [N, D] m = RMSNorm(h1; g_post), its rows xn2 saved
  Operand M = norm_forward(saved, "xn2", "inv2", h1, W("post_attention_layernorm.weight"), N, D_);
  // [N, F] each, in the precision (bf16: as the GEMMs round them; SwiGLU reads them so)
  const Operand gate = gm.forward_saved(saved, "gate", M, OFF("mlp.gate_proj.weight"), N, F_, D_);
  const Operand up = gm.forward_saved(saved, "up", M, OFF("mlp.up_proj.weight"), N, F_, D_);
  M = Operand{};
  // [N, F] SiLU(gate) * up, in the precision: it only feeds the down projection
  float* act = saved.add_uninitialised("act", operand_floats(p, N * F_));
  if (p == Precision::fp32)
    swiglu_forward(gate.f32, up.f32, act, N * F_);
  else
    swiglu_forward(gate.b16, up.b16, reinterpret_cast<bf16*>(act), N * F_);
  gm.forward(saved_operand(saved, "act"), OFF("mlp.down_proj.weight"), h1, N, D_, F_,
             /*accumulate=*/true);
}

const std::vector<std::string>& Block::mlp_saved_names() {
  static const std::vector<std::string> names = {"act", "gate", "up", "xn2", "inv2"};
  return names;
}

// ---- backward: one code path, the weight-gradient GEMMs run now or deferred ------------------

struct Block::GradSink {
  float* dw;                      // the norm gains always accumulate here at once
  DeferredWeightGrads* deferred;  // nullptr: the weight GEMMs run at once too
  Precision p;

  // dW[N,K] += dY[M,N]^T X[M,K], dW at dw_offset; the very call backward always made. A deferred
  // GEMM shares an operand's buffer when it has one (nobody writes it after this point) and
  // copies one without (memory that is overwritten later: the caller's dy, scratch reused).
  void weight_grad(const Operand& dY, const Operand& X, int64_t dw_offset, int64_t M, int64_t N,
                   int64_t K) const {
    if (!deferred) {
      gemm_backward_weight(dY, X, dw + dw_offset, M, N, K);
      return;
    }
    deferred->record(held(dY, M * N), held(X, M * K), dw_offset, M, N, K, p);
  }
  SharedBuffer held(const Operand& o, int64_t n) const {
    if (o.keep) return o.keep;
    STRATA_CHECK(o.f32, "a deferred bf16 operand without its buffer");
    return DeferredWeightGrads::copy(o.f32, n);
  }
};

#define DW(name) (g.dw + OFF(name))  // a norm gain's gradient, written now

void Block::backward(const ParamUnit& u, const float* w, float* dw, SavedTensors& saved,
                     const float* dy, float* dx, const BlockShape& s,
                     const BackwardPoints* at) const {
  backward_impl(u, w, GradSink{dw, nullptr, cfg_.precision}, saved, dy, dx, s, at);
}

void Block::backward_input(const ParamUnit& u, const float* w, float* dw, SavedTensors& saved,
                           const float* dy, float* dx, const BlockShape& s,
                           DeferredWeightGrads& deferred, const BackwardPoints* at) const {
  backward_impl(u, w, GradSink{dw, &deferred, cfg_.precision}, saved, dy, dx, s, at);
}

void Block::backward_weight(DeferredWeightGrads& deferred, float* dw) { deferred.run(dw); }

void Block::backward_impl(const ParamUnit& u, const float* w, const GradSink& g,
                          SavedTensors& saved, const float* dy, float* dx, const BlockShape& s,
                          const BackwardPoints* at) const {
  const int64_t N = s.tokens();
  const UnitGemms gm(cfg_.precision, u, w);
  // Shared: the mixer's o_proj weight gradient reads it, possibly after this call (deferred).
  const SharedBuffer dh1 = uninitialised_shared(N * D_);
  mlp_backward(u, w, gm, g, saved, dy, dh1->data(), N);
  if (at && at->mlp_done) at->mlp_done();
  // Mixer: h1 = x + mixer(a)
  FloatBuffer da = FloatBuffer::uninitialised(N * D_, MemCategory::activations);  // [N, D]
  if (mixer_ == 'L')
    linear_mixer_backward(u, w, gm, g, saved, dh1, da.data(), s, at);
  else
    softmax_mixer_backward(u, w, gm, g, saved, dh1, da.data(), s, at);
  // dx, with the residual's own gradient dh1 added in the same pass
  norm_backward(saved, "xn1", "inv1", W("input_layernorm.weight"), da.data(), dx,
                DW("input_layernorm.weight"), N, D_, dh1->data());
  saved.clear();
}

// MLP: y = h1 + act Wd^T; dh1 (out, [N, D]) = dy + the gradient through RMSNorm(h1; g_post).
// The [N, F] gradients live in the saved [N, F] buffers they replace: dgate in gate, dup in up
// (final once written, so a deferred GEMM shares them; in bf16 they are bf16, as gate and up
// were), and in fp32 dact in act (after the weight gradient has read act, which a deferred GEMM
// therefore copies); in bf16 act is a bf16 operand, so dact gets an fp32 buffer of its own.
void Block::mlp_backward(const ParamUnit& u, const float* w, const UnitGemms& gm, const GradSink& g,
                         SavedTensors& saved, const float* dy, float* dh1, int64_t N) const {
  const Precision p = cfg_.precision;
  const Operand dY = to_operand(p, dy, N * D_);
  FloatBuffer dact_own;  // bf16: [N, F]
  float* dact = nullptr;
  if (p == Precision::fp32) {
    dact = saved.mutable_get("act");  // [N, F] -> dact
    g.weight_grad(dY, Operand{dact, nullptr, nullptr}, OFF("mlp.down_proj.weight"), N, D_, F_);
  } else {
    dact_own = FloatBuffer::uninitialised(N * F_, MemCategory::activations);
    dact = dact_own.data();
    g.weight_grad(dY, saved_operand(saved, "act"), OFF("mlp.down_proj.weight"), N, D_, F_);
  }
  gm.backward_input(dY, OFF("mlp.down_proj.weight"), dact, N, D_, F_);
  // dgate, dup in place of gate, up, in the precision (final once written, so a deferred GEMM
  // shares them)
  float* gate = saved.mutable_get("gate");
  float* up = saved.mutable_get("up");
  if (p == Precision::fp32) {
    swiglu_backward(gate, up, dact, gate, up, N * F_);
  } else {
    bf16 *gb = reinterpret_cast<bf16*>(gate), *ub = reinterpret_cast<bf16*>(up);
    swiglu_backward(gb, ub, dact, gb, ub, N * F_);
  }
  dact_own = FloatBuffer();
  saved.drop("act");
  const Operand dG = saved_operand(saved, "gate");
  const Operand dU = saved_operand(saved, "up");
  FloatBuffer dm = FloatBuffer::uninitialised(N * D_, MemCategory::activations);  // [N, D]
  gm.backward_input(dG, OFF("mlp.gate_proj.weight"), dm.data(), N, F_, D_);
  gm.backward_input(dU, OFF("mlp.up_proj.weight"), dm.data(), N, F_, D_, true);
  // [N, D] the forward's m again
  const Operand M = norm_operand(saved, "xn2", W("post_attention_layernorm.weight"), N, D_);
  g.weight_grad(dG, M, OFF("mlp.gate_proj.weight"), N, F_, D_);
  g.weight_grad(dU, M, OFF("mlp.up_proj.weight"), N, F_, D_);
  for (const char* t : {"gate", "up"}) saved.drop(t);
  norm_backward(saved, "xn2", "inv2", W("post_attention_layernorm.weight"), dm.data(), dh1,
                DW("post_attention_layernorm.weight"), N, D_, dy);  // + the residual's own
  for (const char* t : {"xn2", "inv2"}) saved.drop(t);
}

// ---- linear attention mixer ------------------------------------------------------------------
// q = phi(a Wq^T), k = phi(a Wk^T)/sqrt(dh), v = a Wv^T; o = LinAttn(q,k,v);
// u = per-head RMS(o); out = (u * g_out) Wo^T
// Saved: the projections qp, kp, v and u (in the precision), the linear state prefix and the
// per-head statistics. q, k and u * g_out are element-wise functions of those: the backward forms
// them again, bit for bit, rather than keeping more [N, E] tensors per block.

namespace {

// scale * phi(x) [n] in the precision of x, an operand as saved (fp32 or bf16): in bf16 q and k
// only enter the kernel's bf16 products, so they are stored as it packs them.
Operand feature_mapped(const Operand& x, int64_t n, bool silu, float scale) {
  const Precision p = x.f32 ? Precision::fp32 : Precision::bf16;
  auto b = std::make_shared<FloatBuffer>(
      FloatBuffer::uninitialised(operand_floats(p, n), MemCategory::activations));
  if (x.f32)
    feature_map_forward(x.f32, b->data(), n, silu, scale);
  else
    feature_map_forward(x.b16, as_bf16(*b), n, silu, scale);
  return operand_of(p, b);
}

// d [n] * scale * phi'(x) as the GEMM operand it becomes: fp32 in place in d, bf16 into an
// operand of its own (one pass, where the fp32 product and then its bf16 copy took two).
Operand feature_map_grad(const Operand& x, const SharedBuffer& d, int64_t n, bool silu,
                         float scale) {
  if (x.f32) {
    feature_map_backward(x.f32, d->data(), d->data(), n, silu, scale);
    return operand_of(Precision::fp32, d);
  }
  const SharedBuffer b = uninitialised_shared(operand_floats(Precision::bf16, n));
  feature_map_backward(x.b16, d->data(), as_bf16(*b), n, silu, scale);
  return operand_of(Precision::bf16, b);
}

// LASP-2 on q, k, v as stored (all fp32 or all bf16).
void linear_attention_forward(Comm& sp, const LinearAttentionShape& s, const Operand& q,
                              const Operand& k, const Operand& v, const float* gamma, float* o,
                              float* prefix) {
  if (q.f32)
    sequence::linear_attention_forward(sp, s, q.f32, k.f32, v.f32, gamma, o, prefix);
  else
    sequence::linear_attention_forward(sp, s, q.b16, k.b16, v.b16, gamma, o, prefix);
}

void linear_attention_backward(Comm& sp, const LinearAttentionShape& s, const Operand& q,
                               const Operand& k, const Operand& v, const float* gamma,
                               const float* prefix, const float* dout, float* dq, float* dk,
                               float* dv) {
  if (q.f32)
    sequence::linear_attention_backward(sp, s, q.f32, k.f32, v.f32, gamma, prefix, dout, dq, dk,
                                        dv);
  else
    sequence::linear_attention_backward(sp, s, q.b16, k.b16, v.b16, gamma, prefix, dout, dq, dk,
                                        dv);
}

}  // namespace

void Block::linear_mixer_forward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                                 const Operand& a, float* out, const BlockShape& s,
                                 SavedTensors& saved) const {
  const int64_t N = s.tokens(), E = H_ * dh_;
  const bool silu = cfg_.feature_map == FeatureMap::silu;
  const float kscale = 1.f / std::sqrt(static_cast<float>(dh_));
  // [N, H*dh] each: the pre-feature-map projections and the values, in the precision
  const Operand qp = gm.forward_saved(saved, "qp", a, OFF("q_proj.weight"), N, E, D_);
  const Operand kp = gm.forward_saved(saved, "kp", a, OFF("k_proj.weight"), N, E, D_);
  const Operand v = gm.forward_saved(saved, "v", a, OFF("v_proj.weight"), N, E, D_);
  Operand q = feature_mapped(qp, N * E, silu, 1.f);  // [B, T, H, dh] each, in the precision
  Operand k = feature_mapped(kp, N * E, silu, kscale);
  FloatBuffer o = FloatBuffer::uninitialised(N * E, MemCategory::activations);  // [B, T, H, dh]
  // [B, H, dh, dh] the state entering this chunk from earlier sequence-parallel ranks (LASP-2)
  float* prefix = saved.add("prefix", s.B * H_ * dh_ * dh_);
  const LinearAttentionShape shape{s.B, s.T, H_, dh_, cfg_.chunk_size, cfg_.precision};
  linear_attention_forward(sequence_group(s), shape, q, k, v, gammas_.data(), o.data(), prefix);
  q = k = Operand{};
  save_normalised(saved, "u", "inv_o", o.data(), N * H_, dh_);  // u [N, E], inv_o [N*H]
  o.reset();
  gm.forward(norm_operand(saved, "u", W("out_norm.weight"), N, E), OFF("o_proj.weight"), out, N, D_,
             E);
}

void Block::linear_mixer_backward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                                  const GradSink& g, SavedTensors& saved, const SharedBuffer& dout,
                                  float* da, const BlockShape& s, const BackwardPoints* at) const {
  const int64_t N = s.tokens(), E = H_ * dh_;
  const Precision p = cfg_.precision;
  const bool silu = cfg_.feature_map == FeatureMap::silu;
  const float kscale = 1.f / std::sqrt(static_cast<float>(dh_));
  FloatBuffer dO = FloatBuffer::uninitialised(N * E, MemCategory::activations);  // [B, T, H, dh]
  {
    const float* g_out = W("out_norm.weight");
    FloatBuffer dz = FloatBuffer::uninitialised(N * E, MemCategory::activations);  // [N, D]
    const Operand dOut = to_operand(p, dout->data(), N * D_, dout);
    gm.backward_input(dOut, OFF("o_proj.weight"), dz.data(), N, D_, E);
    // u * g_out again, in a buffer of its own that a deferred GEMM keeps
    g.weight_grad(dOut, norm_operand(saved, "u", g_out, N, E), OFF("o_proj.weight"), N, D_, E);
    if (p == Precision::fp32)
      accumulate_column_products(dz.data(), saved.get("u"), DW("out_norm.weight"), N, E);
    else
      accumulate_column_products(dz.data(), reinterpret_cast<const bf16*>(saved.get("u")),
                                 DW("out_norm.weight"), N, E);
    // du in place of dz
    scale_columns(dz.data(), g_out, dz.data(), N, E);
    norm_backward(saved, "u", "inv_o", nullptr, dz.data(), dO.data(), nullptr, N * H_, dh_);
    for (const char* t : {"u", "inv_o"}) saved.drop(t);
  }
  SharedBuffer dq = uninitialised_shared(N * E), dk = uninitialised_shared(N * E);
  const SharedBuffer dv = uninitialised_shared(N * E);
  Operand qp = saved_operand(saved, "qp"), kp = saved_operand(saved, "kp");
  {
    const Operand q = feature_mapped(qp, N * E, silu, 1.f);  // as forward
    const Operand k = feature_mapped(kp, N * E, silu, kscale);
    const LinearAttentionShape shape{s.B, s.T, H_, dh_, cfg_.chunk_size, cfg_.precision};
    linear_attention_backward(sequence_group(s), shape, q, k, saved_operand(saved, "v"),
                              gammas_.data(), saved.get("prefix"), dO.data(), dq->data(),
                              dk->data(), dv->data());
  }
  dO.reset();
  for (const char* t : {"v", "prefix"}) saved.drop(t);
  if (at && at->attention_done) at->attention_done();
  // Through the feature maps (bf16: the fp32 dq, dk go once their operands are formed)
  const Operand dQ = feature_map_grad(qp, dq, N * E, silu, 1.f);
  const Operand dK = feature_map_grad(kp, dk, N * E, silu, kscale);
  dq.reset(), dk.reset();
  for (const char* t : {"qp", "kp"}) saved.drop(t);
  qp = kp = Operand{};  // their memory goes now, not at the end of the backward
  const Operand A = norm_operand(saved, "xn1", W("input_layernorm.weight"), N, D_);
  input_projections_backward(u, gm, g, A, dQ, dK, to_operand(p, dv->data(), N * E, dv), E, da, N);
}

// ---- softmax attention mixer -----------------------------------------------------------------
// q = RoPE(a Wq^T), k = RoPE(a Wk^T), v = a Wv^T (grouped-query); out = Attn(q,k,v) Wo^T

// Saved: q, k_all, v_all and o, in the precision: in bf16 they only feed the attention's
// products and o_proj, as operands. The forward therefore runs the attention on the values
// the bf16 tensors hold (q, k, v rounded before it), and the backward expands them exactly.
void Block::softmax_mixer_forward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                                  const Operand& a, float* out, const BlockShape& s,
                                  SavedTensors& saved) const {
  (void)w;
  const int64_t N = s.tokens(), E = H_ * dh_, Ekv = Hkv_ * dh_;
  const int64_t kv = s.B * s.T * sequence_group(s).size() * Ekv;  // the whole sequence's
  const Precision p = cfg_.precision;
  float* q = saved.add_uninitialised("q", operand_floats(p, N * E));  // [B, T, H, dh] after RoPE
  // [B, T, Hkv, dh] each, this rank's: k after RoPE, v
  FloatBuffer k = FloatBuffer::uninitialised(operand_floats(p, N * Ekv), MemCategory::activations);
  FloatBuffer v = FloatBuffer::uninitialised(operand_floats(p, N * Ekv), MemCategory::activations);
  if (p == Precision::fp32) {
    gm.forward(a, OFF("q_proj.weight"), q, N, E, D_);
    gm.forward(a, OFF("k_proj.weight"), k.data(), N, Ekv, D_);
    gm.forward(a, OFF("v_proj.weight"), v.data(), N, Ekv, D_);
    rope_forward<float>(q, s.B, s.T, H_, dh_, s.pos0, cfg_.rope_theta);
    rope_forward<float>(k.data(), s.B, s.T, Hkv_, dh_, s.pos0, cfg_.rope_theta);
  } else {
    roped_projection_bf16(gm, a, OFF("q_proj.weight"), H_, s, reinterpret_cast<bf16*>(q));
    roped_projection_bf16(gm, a, OFF("k_proj.weight"), Hkv_, s, as_bf16(k));
    gm.forward_bf16(a, OFF("v_proj.weight"), as_bf16(v), N, Ekv, D_);
  }
  // LASP-2H: keys and values of the whole sequence, gathered over the sequence-parallel group
  float* k_all = saved.add_uninitialised("k_all", operand_floats(p, kv));  // [B,Tall,Hkv,dh]
  float* v_all = saved.add_uninitialised("v_all", operand_floats(p, kv));  // [B,Tall,Hkv,dh]
  float* o = saved.add_uninitialised("o", operand_floats(p, N * E));       // [B, T, H, dh]
  float* lse = saved.add("lse", s.B * H_ * s.T);                           // [B, H, T]
  Comm& sp = sequence_group(s);
  if (p == Precision::fp32) {
    sequence::softmax_attention_forward(sp, s.B, s.T, H_, Hkv_, dh_, q, k.data(), v.data(), k_all,
                                        v_all, o, lse);
  } else {
    auto b16 = [](float* x) { return reinterpret_cast<bf16*>(x); };
    sequence::softmax_attention_forward(sp, s.B, s.T, H_, Hkv_, dh_, b16(q), as_bf16(k), as_bf16(v),
                                        b16(k_all), b16(v_all), b16(o), lse);
  }
  k.reset(), v.reset();
  gm.forward(saved_operand(saved, "o"), OFF("o_proj.weight"), out, N, D_, E);
}

// y [N, heads * dh] = RoPE(a W^T) rounded once to bf16: RoPE runs in fp32 on the GEMM's fp32
// output (the bf16 precision's q and k, which only the attention's bf16 products read).
void Block::roped_projection_bf16(const UnitGemms& gm, const Operand& a, int64_t w_off,
                                  int64_t heads, const BlockShape& s, bf16* y) const {
  const int64_t N = s.tokens(), n = N * heads * dh_;
  FloatBuffer x = FloatBuffer::uninitialised(n, MemCategory::activations);
  gm.forward(a, w_off, x.data(), N, heads * dh_, D_);
  rope_forward<float>(x.data(), s.B, s.T, heads, dh_, s.pos0, cfg_.rope_theta);
  to_bf16(x.data(), y, n);
}

void Block::softmax_mixer_backward(const ParamUnit& u, const float* w, const UnitGemms& gm,
                                   const GradSink& g, SavedTensors& saved, const SharedBuffer& dout,
                                   float* da, const BlockShape& s, const BackwardPoints* at) const {
  const int64_t N = s.tokens(), E = H_ * dh_, Ekv = Hkv_ * dh_;
  const Precision p = cfg_.precision;
  FloatBuffer dO = FloatBuffer::uninitialised(N * E, MemCategory::activations);  // [B, T, H, dh]
  const Operand dOut = to_operand(p, dout->data(), N * D_, dout);
  gm.backward_input(dOut, OFF("o_proj.weight"), dO.data(), N, D_, E);
  g.weight_grad(dOut, saved_operand(saved, "o"), OFF("o_proj.weight"), N, D_, E);
  // Shared so that a deferred weight GEMM keeps them (final after the RoPE backward below).
  const SharedBuffer dq = uninitialised_shared(N * E), dk = uninitialised_shared(N * Ekv),
                     dv = uninitialised_shared(N * Ekv);
  const Operand q = saved_operand(saved, "q"), k_all = saved_operand(saved, "k_all"),
                v_all = saved_operand(saved, "v_all"), o = saved_operand(saved, "o");
  if (q.f32)
    sequence::softmax_attention_backward(sequence_group(s), s.B, s.T, H_, Hkv_, dh_, q.f32,
                                         k_all.f32, v_all.f32, o.f32, saved.get("lse"), dO.data(),
                                         dq->data(), dk->data(), dv->data());
  else  // bf16: the products in bf16, the operands packed as saved
    sequence::softmax_attention_backward(sequence_group(s), s.B, s.T, H_, Hkv_, dh_, q.b16,
                                         k_all.b16, v_all.b16, o.b16, saved.get("lse"), dO.data(),
                                         dq->data(), dk->data(), dv->data());
  dO.reset();
  for (const char* t : {"q", "k_all", "v_all", "o", "lse"}) saved.drop(t);
  if (at && at->attention_done) at->attention_done();
  rope_backward<float>(dq->data(), s.B, s.T, H_, dh_, s.pos0, cfg_.rope_theta);
  rope_backward<float>(dk->data(), s.B, s.T, Hkv_, dh_, s.pos0, cfg_.rope_theta);
  const Operand A = norm_operand(saved, "xn1", W("input_layernorm.weight"), N, D_);
  const Operand dQ = to_operand(p, dq->data(), N * E, dq);
  const Operand dK = to_operand(p, dk->data(), N * Ekv, dk);
  input_projections_backward(u, gm, g, A, dQ, dK, to_operand(p, dv->data(), N * Ekv, dv), Ekv, da,
                             N);
}

// Both mixers end in q/k/v = a W^T: da (overwritten) from dQ, dK, dV ([N, E], [N, Ekv] x2, as
// GEMM operands), then the three weight gradients, in that order (the order the undeferred sums
// were taken in).
void Block::input_projections_backward(const ParamUnit& u, const UnitGemms& gm, const GradSink& g,
                                       const Operand& a, const Operand& dQ, const Operand& dK,
                                       const Operand& dV, int64_t Ekv, float* da, int64_t N) const {
  const int64_t E = H_ * dh_;
  gm.backward_input(dQ, OFF("q_proj.weight"), da, N, E, D_);
  gm.backward_input(dK, OFF("k_proj.weight"), da, N, Ekv, D_, true);
  gm.backward_input(dV, OFF("v_proj.weight"), da, N, Ekv, D_, true);
  g.weight_grad(dQ, a, OFF("q_proj.weight"), N, E, D_);
  g.weight_grad(dK, a, OFF("k_proj.weight"), N, Ekv, D_);
  g.weight_grad(dV, a, OFF("v_proj.weight"), N, Ekv, D_);
}

#undef W
#undef OFF
#undef DW

}  // namespace strata
