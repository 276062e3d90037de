#include "launch/memory_plan_block.h"

#include <algorithm>
#include <vector>

#include "core/softmax_attention.h"

namespace strata {

namespace {
constexpr MemCategory kAct = MemCategory::activations;
}  // namespace

void SavedSet::add(Ledger& l, const std::string& name, int64_t floats) {
  items.emplace_back(name, l.alloc(kAct, Ledger::paged(static_cast<double>(floats))));
}

Ledger::Id SavedSet::detach(const std::string& name) {
  auto it =
      std::find_if(items.begin(), items.end(), [&](const auto& i) { return i.first == name; });
  if (it == items.end()) return Ledger::kNone;
  const Ledger::Id id = it->second;
  items.erase(it);
  return id;
}

void SavedSet::drop(Ledger& l, const std::string& name) {
  Ledger::Id id = detach(name);
  l.free(id);
}

void SavedSet::clear(Ledger& l) {
  for (auto& [name, id] : items) l.free(id);
  items.clear();
}

double SavedSet::bytes(const Ledger& l) const {
  double b = 0;
  for (const auto& [name, id] : items) b += l.bytes(id);
  return b;
}

double SavedSet::bytes_of(const Ledger& l, const std::string& name) const {
  for (const auto& [n, id] : items)
    if (n == name) return l.bytes(id);
  return 0;
}

namespace {

Ledger::Id fbuf(Ledger& l, int64_t floats) {
  return l.alloc(kAct, Ledger::floats(static_cast<double>(floats)));
}

// Block::save_normalised: the statistics, then the rows in the precision.
void save_normalised(Ledger& l, const BlockDims& d, SavedSet& s, const char* rows,
                     const char* stats, int64_t n_rows, int64_t n) {
  s.add(l, stats, n_rows);
  s.add(l, rows, d.operand(n));
}

// Block::norm_operand: rows * g in the precision, a buffer of its own.
Ledger::Id norm_operand(Ledger& l, const BlockDims& d, int64_t n) { return fbuf(l, d.operand(n)); }

// to_operand of an fp32 buffer: a bf16 copy in bf16, nothing in fp32.
Ledger::Id operand_copy(Ledger& l, const BlockDims& d, int64_t n) {
  return d.bf16 ? fbuf(l, d.operand(n)) : Ledger::kNone;
}

// The linear-attention kernel's packed operands and chunk products (core/linear_attention.cpp,
// core/head_chunks.h): [B*H, nc, C, dh] operands in the precision, fp32 states and results.
struct ChunkSizes {
  int64_t elems, scores, states;  // values of a packed operand, of the scores, of the states
  ChunkSizes(const BlockDims& d) {
    const int64_t C = std::max<int64_t>(1, std::min(d.chunk, d.T));
    const int64_t mats = d.T > 0 ? d.B * d.H * ((d.T + C - 1) / C) : 0;
    elems = mats * C * d.dh, scores = mats * C * C, states = mats * d.dh * d.dh;
  }
};

// ChunkStates: K, V, the operand and fp32 states, with the mu-scaled values while it is built.
std::vector<Ledger::Id> chunk_states(Ledger& l, const BlockDims& d, const ChunkSizes& z) {
  std::vector<Ledger::Id> held = {fbuf(l, d.operand(z.elems)), fbuf(l, d.operand(z.elems)),
                                  fbuf(l, d.operand(z.states)), fbuf(l, z.states)};
  Ledger::Id vm = fbuf(l, d.operand(z.elems));
  l.free(vm);
  return held;
}

// masked_scores: the fp32 scores, then their masked copy in the precision, which it returns.
Ledger::Id masked_scores(Ledger& l, const BlockDims& d, const ChunkSizes& z) {
  Ledger::Id raw = fbuf(l, z.scores), out = fbuf(l, d.operand(z.scores));
  l.free(raw);
  return out;
}

void free_all(Ledger& l, std::vector<Ledger::Id> ids) {
  for (Ledger::Id& id : ids) l.free(id);
}

// parallel/sequence.cpp's buffers around the kernels. LASP-2: the gathered states (forward) or
// state gradients (backward) of every rank, none alone on the sequence; the backward's suffix
// gradient on every rank with a later one. LASP-2H: K and V packed for the all-gather, and in the
// backward dK, dV of the whole sequence, their packed blocks for the reduce-scatter and this rank's
// share. Alone on the sequence LASP-2H moves nothing: the keys and values are copied straight into
// k_all, v_all and the kernel writes dK, dV in place.
Ledger::Id lasp_states(Ledger& l, const BlockDims& d) {
  const int64_t per = d.B * d.H * d.dh * d.dh;
  return d.sp > 1 ? l.alloc(MemCategory::comm, Ledger::floats(static_cast<double>(d.sp * per)))
                  : Ledger::kNone;
}
int64_t kv_chunk(const BlockDims& d) { return d.B * d.T * d.Hkv * d.dh; }
// core/softmax_attention_bf16.cpp's workspace while the kernel runs (bf16; fp32 has none).
void softmax_kernel(Ledger& l, const BlockDims& d, bool backward) {
  if (!d.bf16) return;
  const SoftmaxAttentionShape shape{d.B, d.T, d.Tall, d.H, d.Hkv, d.dh, d.sp_rank * d.T, 0};
  Ledger::Id w = fbuf(l, softmax_attention_bf16_workspace_floats(shape, backward));
  l.free(w);
}

// parallel/sequence.cpp's LASP-2H forward: the gather (with a second rank), then the kernel.
void lasp2h_gather(Ledger& l, const BlockDims& d) {
  if (d.sp > 1) {
    Ledger::Id blocks =  // K and V as stored (bf16: half the bytes)
        l.alloc(MemCategory::comm,
                Ledger::floats(static_cast<double>(d.operand(2 * d.sp * kv_chunk(d)))));
    l.free(blocks);
  }
  softmax_kernel(l, d, false);
}
void lasp2h_scatter(Ledger& l, const BlockDims& d) {
  if (d.sp == 1) return softmax_kernel(l, d, true);
  const double chunk = static_cast<double>(kv_chunk(d));
  Ledger::Id dk = fbuf(l, d.sp * kv_chunk(d)), dv = fbuf(l, d.sp * kv_chunk(d));
  softmax_kernel(l, d, true);
  Ledger::Id blocks = l.alloc(MemCategory::comm, Ledger::floats(2 * d.sp * chunk));
  l.free(dk);
  l.free(dv);
  Ledger::Id mine = l.alloc(MemCategory::comm, Ledger::floats(2 * chunk));
  l.free(mine);
  l.free(blocks);
}

void linear_kernel_forward(Ledger& l, const BlockDims& d) {
  const ChunkSizes z(d);
  std::vector<Ledger::Id> held = chunk_states(l, d, z);
  held.push_back(fbuf(l, d.operand(z.elems)));  // Q
  held.push_back(masked_scores(l, d, z));
  held.push_back(fbuf(l, z.elems));  // inter
  held.push_back(fbuf(l, z.elems));  // intra
  free_all(l, held);
}

void linear_kernel_backward(Ledger& l, const BlockDims& d) {
  const ChunkSizes z(d);
  std::vector<Ledger::Id> held = chunk_states(l, d, z);
  for (int i = 0; i < 2; ++i) held.push_back(fbuf(l, d.operand(z.elems)));  // Q, dO
  for (int i = 0; i < 2; ++i) held.push_back(fbuf(l, z.elems));             // x1, x2
  Ledger::Id g = masked_scores(l, d, z);
  l.free(g);
  Ledger::Id dol = fbuf(l, d.operand(z.elems));
  l.free(dol);
  held.push_back(masked_scores(l, d, z));  // A
  free_all(l, held);
}

// parallel/sequence.cpp's fp32 copies of bf16 q, k, v for LASP-2's cross-rank products (none
// in fp32, none alone on the sequence).
std::vector<Ledger::Id> cross_rank_values(Ledger& l, const BlockDims& d) {
  if (!d.bf16 || d.sp == 1) return {};
  std::vector<Ledger::Id> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(fbuf(l, d.N() * d.E()));
  return ids;
}

// Block::linear_mixer_forward: the projections saved in the precision, q and k (in the
// precision) and o live through the kernel; o's normalised rows u are saved.
void linear_mixer_forward(Ledger& l, const BlockDims& d, SavedSet& s) {
  const int64_t N = d.N(), E = d.E();
  for (const char* t : {"qp", "kp", "v"}) s.add(l, t, d.operand(N * E));
  Ledger::Id q = fbuf(l, d.operand(N * E)), k = fbuf(l, d.operand(N * E));
  Ledger::Id o = fbuf(l, N * E);
  s.add(l, "prefix", d.B * d.H * d.dh * d.dh);
  std::vector<Ledger::Id> copies = cross_rank_values(l, d);
  Ledger::Id states = lasp_states(l, d);
  linear_kernel_forward(l, d);
  l.free(states);
  free_all(l, copies);
  free_all(l, {q, k});
  save_normalised(l, d, s, "u", "inv_o", N * d.H, N * E);
  l.free(o);
  Ledger::Id z = norm_operand(l, d, N * E);  // u * g_out for o_proj
  l.free(z);
}

// Block::softmax_mixer_forward: q, k_all, v_all and o saved in the precision; in bf16 RoPE's
// fp32 q, then k, are scratch of their own (Block::roped_projection_bf16).
void softmax_mixer_forward(Ledger& l, const BlockDims& d, SavedSet& s) {
  const int64_t N = d.N(), E = d.E(), Ekv = d.Ekv(), kv = d.B * d.Tall * Ekv;
  s.add(l, "q", d.operand(N * E));
  Ledger::Id k = fbuf(l, d.operand(N * Ekv)), v = fbuf(l, d.operand(N * Ekv));
  if (d.bf16)
    for (int64_t n : {N * E, N * Ekv}) {
      Ledger::Id x = fbuf(l, n);
      l.free(x);
    }
  s.add(l, "k_all", d.operand(kv));
  s.add(l, "v_all", d.operand(kv));
  s.add(l, "o", d.operand(N * E));
  s.add(l, "lse", d.B * d.H * d.T);
  lasp2h_gather(l, d);
  l.free(k);
  l.free(v);
}

void mixer_forward(Ledger& l, const BlockDims& d, SavedSet& s) {
  if (d.mixer == 'L') return linear_mixer_forward(l, d, s);
  softmax_mixer_forward(l, d, s);
}

}  // namespace

SavedSet replay_block_forward(Ledger& l, const BlockDims& d, bool with_input) {
  const int64_t N = d.N(), D = d.D, F = d.F;
  SavedSet s;
  if (with_input) s.add(l, "x", N * D);
  save_normalised(l, d, s, "xn1", "inv1", N, N * D);
  Ledger::Id a = norm_operand(l, d, N * D);
  mixer_forward(l, d, s);
  l.free(a);
  save_normalised(l, d, s, "xn2", "inv2", N, N * D);
  Ledger::Id m = norm_operand(l, d, N * D);
  // gate, up and act in the precision, written straight into their saved buffers
  for (const char* t : {"gate", "up"}) s.add(l, t, d.operand(N * F));
  l.free(m);
  s.add(l, "act", d.operand(N * F));
  return s;
}

namespace {

// A weight GEMM's operand buffer that a deferred GEMM keeps: handed to `deferred` (the caller
// then frees nothing); without deferral it stays the caller's to free.
void keep(std::vector<Ledger::Id>* deferred, Ledger::Id& id) {
  if (!deferred || id == Ledger::kNone) return;
  deferred->push_back(id);
  id = Ledger::kNone;
}

// Block::mlp_backward. The operands dG, dU (the saved gate and up, overwritten by their
// gradients) hold their saved buffers (Operand::keep) past their drop, to the function's end, as
// does M, formed again from xn2; in bf16 dact is a buffer of its own. Deferred, down_proj's GEMM
// copies dy and act in fp32 (both are overwritten later) and keeps dy's bf16 copy and the saved
// bf16 act in bf16.
void mlp_backward(Ledger& l, const BlockDims& d, SavedSet& s, std::vector<Ledger::Id>* deferred) {
  const int64_t N = d.N(), D = d.D, F = d.F;
  Ledger::Id dY = operand_copy(l, d, N * D);
  Ledger::Id dact = d.bf16 ? fbuf(l, N * F) : Ledger::kNone;
  if (deferred && !d.bf16) {
    deferred->push_back(fbuf(l, N * D));
    deferred->push_back(fbuf(l, N * F));
  }
  keep(deferred, dY);
  l.free(dact);
  Ledger::Id act = s.detach("act");
  if (d.bf16) keep(deferred, act);
  l.free(act);
  Ledger::Id dm = fbuf(l, N * D);
  Ledger::Id held_m = norm_operand(l, d, N * D);
  Ledger::Id held_gate = s.detach("gate"), held_up = s.detach("up");
  for (Ledger::Id* id : {&held_gate, &held_up, &held_m}) keep(deferred, *id);
  s.drop(l, "xn2");
  s.drop(l, "inv2");
  for (Ledger::Id* id : {&dm, &held_gate, &held_up, &held_m, &dY}) l.free(*id);
}

// input_projections_backward: a formed again from xn1 (its argument), and the bf16 copies of dq,
// dk, dv live through it (deferred: to W, a too; in fp32 the GEMMs keep dq, dk, dv themselves,
// which the caller hands over).
// Block::input_projections_backward from the input norm's operand a and the operands of dq, dk
// (formed by the caller), with dv's made here.
void input_projections(Ledger& l, const BlockDims& d, std::vector<Ledger::Id>* deferred,
                       Ledger::Id a, Ledger::Id q, Ledger::Id k) {
  Ledger::Id v = operand_copy(l, d, d.N() * d.Ekv());
  for (Ledger::Id* id : {&q, &k, &v, &a}) keep(deferred, *id);
  for (Ledger::Id* id : {&q, &k, &v, &a}) l.free(*id);
}

// Deferred: o_proj's GEMM keeps dout's bf16 copy (fp32: dout itself, the caller's dh1) and z,
// formed again from u; the input projections' keep dq, dk, dv (bf16: their copies).
void linear_mixer_backward(Ledger& l, const BlockDims& d, SavedSet& s, const BackwardPoints& at,
                           std::vector<Ledger::Id>* deferred) {
  const int64_t N = d.N(), E = d.E();
  Ledger::Id dO = fbuf(l, N * E);
  {
    Ledger::Id dz = fbuf(l, N * E), dOut = operand_copy(l, d, N * d.D);
    Ledger::Id z = norm_operand(l, d, N * E);
    keep(deferred, dOut);
    keep(deferred, z);
    l.free(z);
    s.drop(l, "u");
    s.drop(l, "inv_o");
    free_all(l, {dz, dOut});
  }
  Ledger::Id dq = fbuf(l, N * E), dk = fbuf(l, N * E), dv = fbuf(l, N * E);
  {
    Ledger::Id q = fbuf(l, d.operand(N * E)), k = fbuf(l, d.operand(N * E));
    std::vector<Ledger::Id> copies = cross_rank_values(l, d);
    Ledger::Id grads = lasp_states(l, d);
    linear_kernel_backward(l, d);
    if (d.sp_rank + 1 < d.sp) {
      Ledger::Id suffix = fbuf(l, d.B * d.H * d.dh * d.dh);
      l.free(suffix);
    }
    l.free(grads);
    free_all(l, copies);
    free_all(l, {q, k});
  }
  l.free(dO);
  for (const char* t : {"v", "prefix"}) s.drop(l, t);
  if (at.attention_done) at.attention_done();
  // the feature maps' gradients: bf16 operands of their own, the fp32 dq, dk freed at once
  Ledger::Id dQ = operand_copy(l, d, N * E), dK = operand_copy(l, d, N * E);
  if (d.bf16) l.free(dq), l.free(dk);
  s.drop(l, "qp");
  s.drop(l, "kp");
  input_projections(l, d, deferred, norm_operand(l, d, N * d.D), dQ, dK);
  if (!d.bf16)
    for (Ledger::Id* id : {&dq, &dk, &dv}) keep(deferred, *id);
  for (Ledger::Id* id : {&dq, &dk, &dv}) l.free(*id);
}

// Block::softmax_mixer_backward (the kernel reads the saved operands as they are). Deferred:
// o_proj's GEMM keeps dout's bf16 copy (fp32: the caller's dh1) and the saved o; the input
// projections as the linear mixer's.
void softmax_mixer_backward(Ledger& l, const BlockDims& d, SavedSet& s, const BackwardPoints& at,
                            std::vector<Ledger::Id>* deferred) {
  const int64_t N = d.N(), E = d.E(), Ekv = d.Ekv();
  Ledger::Id dO = fbuf(l, N * E), dOut = operand_copy(l, d, N * d.D);
  keep(deferred, dOut);
  if (deferred) {
    Ledger::Id o = s.detach("o");
    keep(deferred, o);
  }
  Ledger::Id dq = fbuf(l, N * E), dk = fbuf(l, N * Ekv), dv = fbuf(l, N * Ekv);
  lasp2h_scatter(l, d);
  l.free(dO);
  for (const char* t : {"q", "k_all", "v_all", "o", "lse"}) s.drop(l, t);
  if (at.attention_done) at.attention_done();
  Ledger::Id a = norm_operand(l, d, N * d.D);
  Ledger::Id dQ = operand_copy(l, d, N * E);
  input_projections(l, d, deferred, a, dQ, operand_copy(l, d, N * Ekv));
  if (!d.bf16)
    for (Ledger::Id* id : {&dq, &dk, &dv}) keep(deferred, *id);
  for (Ledger::Id* id : {&dq, &dk, &dv, &dOut}) l.free(*id);
}

}  // namespace

void replay_block_backward(Ledger& l, const BlockDims& d, SavedSet& s, const BackwardPoints& at,
                           std::vector<Ledger::Id>* deferred) {
  const int64_t N = d.N(), D = d.D;
  Ledger::Id dh1 = fbuf(l, N * D);
  mlp_backward(l, d, s, deferred);
  if (at.mlp_done) at.mlp_done();
  Ledger::Id da = fbuf(l, N * D);
  if (d.mixer == 'L')
    linear_mixer_backward(l, d, s, at, deferred);
  else
    softmax_mixer_backward(l, d, s, at, deferred);
  if (!d.bf16) keep(deferred, dh1);  // o_proj's dY in fp32
  s.clear(l);
  l.free(da);
  l.free(dh1);
}

}  // namespace strata
