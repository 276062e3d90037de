#include "models/flops.h"

#include <algorithm>

#include "core/softmax_attention.h"
#include "models/vocab_head.h"

namespace strata {
namespace {

// Key/value width of block i: grouped-query heads on softmax blocks, every head on linear ones.
int64_t kv_width(const ModelConfig& cfg, int64_t block) {
  return (cfg.mixer(block) == 'S' ? cfg.n_kv_heads : cfg.n_heads) * cfg.head_dim();
}

int64_t total_length(const FlopShape& s) { return s.seq_total > 0 ? s.seq_total : s.seq_chunk; }

// Sequences in the micro-batch (a fraction only if the caller's tokens are not whole sequences).
double sequences(const FlopShape& s) {
  return s.seq_chunk > 0 ? static_cast<double>(s.tokens) / static_cast<double>(s.seq_chunk) : 0;
}

// Chunked linear attention per (sequence, head), as parallel/sequence.cpp (LASP-2; one rank is
// sp = 1 of it) and core/linear_attention.cpp run it. The kernel multiplies whole chunks of C
// rows (the last one padded), every chunk at once: its forward does Q K^T and (.) V (C*C*dh each),
// Q S_prev and the state update K^T V (C*dh*dh each); its backward recomputes the chunk states
// and both score matrices and forms dQ, dK, dV and dS_prev: 5 C*C*dh and 5 C*dh*dh products. Around
// the kernel, LASP-2 forms this rank's state (T*dh*dh) in the forward and its prefix gradient in
// the backward, and a rank with earlier ranks adds their state to its output and query gradients,
// one with later ranks their gradient to its keys and values (2 products).
UnitFlops linear_core(const ModelConfig& cfg, const FlopShape& s) {
  const double dh = static_cast<double>(cfg.head_dim());
  const int64_t T = s.seq_chunk;
  const int64_t C = std::max<int64_t>(1, std::min(cfg.chunk_size, T));
  const double chunks = static_cast<double>((T + C - 1) / C), n = static_cast<double>(C);
  double fwd = chunks * 2 * (2 * n * n * dh + 2 * n * dh * dh);
  double bwd = chunks * 2 * (5 * n * n * dh + 5 * n * dh * dh);
  const double state = 2 * static_cast<double>(T) * dh * dh;  // one [T, dh] x [dh, dh] product
  const double ranks =
      static_cast<double>(total_length(s)) / static_cast<double>(std::max<int64_t>(1, T));
  const double with_earlier = ranks > 0 ? (ranks - 1) / ranks : 0;  // also: with later ranks
  const double own = ranks > 1 ? state : 0;  // alone on its sequence, no state is shared
  fwd += own + with_earlier * state;
  bwd += own + with_earlier * state + with_earlier * 2 * state;
  const double heads = static_cast<double>(cfg.n_heads) * sequences(s);
  return {fwd * heads, bwd * heads, 0};
}

// (query, key) pairs a causal softmax computes per (sequence, head), as
// core/softmax_attention.cpp tiles it: a tile of m queries starting at i0 scores every key up to
// its last query, q_pos0 + i0 + m of them; q_pos0 averaged over the sp ranks' chunks. The bf16
// kernel's blocks of up to 128 queries score a few more (counted here as the fp32 kernel's: the
// model's work, whichever kernel runs it).
double causal_pairs(const FlopShape& s) {
  const int64_t T = s.seq_chunk;
  double pairs = 0;
  for (int64_t i0 = 0; i0 < T; i0 += kSoftmaxQueryTile) {
    const double m = static_cast<double>(std::min(kSoftmaxQueryTile, T - i0));
    pairs += m * (static_cast<double>(i0) + m);
  }
  const double mean_q_pos0 = static_cast<double>(total_length(s) - T) / 2;
  return pairs + static_cast<double>(T) * mean_q_pos0;
}

// Softmax attention: the forward's Q K^T and P V (pairs*dh each); the backward recomputes P and
// forms dV, dP, dQ and dK: five products of pairs*dh.
UnitFlops softmax_core(const ModelConfig& cfg, const FlopShape& s) {
  const double per_head = causal_pairs(s) * static_cast<double>(cfg.head_dim());
  const double heads = static_cast<double>(cfg.n_heads) * sequences(s);
  return {2 * 2 * per_head * heads, 2 * 5 * per_head * heads, 0};
}

}  // namespace

UnitFlops& UnitFlops::operator+=(const UnitFlops& other) {
  forward += other.forward;
  backward_input += other.backward_input;
  backward_weight += other.backward_weight;
  return *this;
}

// Each Linear of [out, in] over N rows costs 2*N*in*out forward, and the same again for its
// input gradient (dY W) and for its weight gradient (dY^T X).
UnitFlops block_gemm_flops(const ModelConfig& cfg, int64_t block, int64_t tokens) {
  const double D = static_cast<double>(cfg.dim), F = static_cast<double>(cfg.ffn_dim);
  const double E = static_cast<double>(cfg.n_heads * cfg.head_dim());
  const double Ekv = static_cast<double>(kv_width(cfg, block));
  const double weights = D * E + 2 * D * Ekv + E * D + 3 * D * F;  // q, k, v, o, gate, up, down
  const double one = 2 * static_cast<double>(tokens) * weights;
  return {one, one, one};
}

UnitFlops attention_core_flops(const ModelConfig& cfg, int64_t block, const FlopShape& shape) {
  return cfg.mixer(block) == 'S' ? softmax_core(cfg, shape) : linear_core(cfg, shape);
}

UnitFlops block_flops(const ModelConfig& cfg, int64_t block, const FlopShape& shape) {
  UnitFlops f = block_gemm_flops(cfg, block, shape.tokens);
  f += attention_core_flops(cfg, block, shape);
  return f;
}

UnitFlops head_flops(const ModelConfig& cfg, int64_t tokens, bool vocab_split) {
  const double one = 2 * static_cast<double>(tokens) * static_cast<double>(cfg.vocab_size) *
                     static_cast<double>(cfg.dim);
  // The tiled head (models/vocab_head.h) never keeps the whole [N, V] logits: split, or over a
  // vocabulary too large for its fused passes, the weight-gradient pass computes them again (two
  // GEMMs); whole and small enough, it reads one token tile's logits kept from the S pass.
  const bool fused =
      !vocab_split && vocab_head_fused_floats(tokens, cfg.vocab_size, VocabTiles{}) > 0;
  return {one, one, fused ? one : 2 * one};
}

UnitFlops embedding_flops(const ModelConfig& /*cfg*/, int64_t /*tokens*/) { return {}; }

std::vector<UnitFlops> unit_flops(const ModelConfig& cfg, const FlopShape& shape) {
  std::vector<UnitFlops> units;
  units.reserve(static_cast<size_t>(cfg.n_layers + 2));
  units.push_back(embedding_flops(cfg, shape.tokens));
  for (int64_t i = 0; i < cfg.n_layers; ++i) units.push_back(block_flops(cfg, i, shape));
  units.push_back(head_flops(cfg, shape.tokens));
  return units;
}

}  // namespace strata
