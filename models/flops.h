#pragma once
// A FLOP model of one micro-batch through each unit of the model (Model::units(): embedding,
// blocks, head), from the configuration alone: what pipeline placement balances and what the
// schedule simulator charges per action (launch/pipeline_plan.h).
//
// It counts the GEMMs the CPU kernels issue, 2 FLOPs per multiply-add, as core/gemm.h's counter
// does: the weight GEMMs (projections, MLP, LM head) and the attention core (linear attention's
// chunked products, softmax attention's causal tiles), each as the kernel runs it (chunk and tile
// sizes included), so a measured step matches the model. Element-wise work is left out: norms,
// SwiGLU and RoPE are O(N*D) against the GEMMs' O(N*D^2); the head's softmax and cross-entropy
// are O(N*V) exponentials against its O(N*V*D) GEMMs, but an exponential costs more than a
// multiply-add, so the measured balance of stages drifts from this model's by 10-30%
// (bench/pipeline_bench, Table 2: measured against FLOP max/min). The embedding is a lookup and
// costs nothing.
//
// The backward is split as zero-bubble schedules split it: backward_weight is the weight-gradient
// GEMMs (W, off the critical path), backward_input everything else (I: the input-gradient GEMMs
// and the whole attention-core backward, which recomputes what the forward did not save).
#include <cstdint>
#include <vector>

#include "models/config.h"

namespace strata {

struct UnitFlops {
  double forward = 0;
  double backward_input = 0;
  double backward_weight = 0;

  double backward() const { return backward_input + backward_weight; }
  double total() const { return forward + backward(); }
  UnitFlops& operator+=(const UnitFlops& other);
};

// One rank's micro-batch: `tokens` = B * seq_chunk rows; `seq_chunk` the tokens of each sequence
// on this rank; `seq_total` the whole sequence's length over the sequence-parallel group (0: the
// same as seq_chunk). With seq_total > seq_chunk the costs are the average over the sp ranks (a
// later chunk of a causal softmax sequence sees more keys).
struct FlopShape {
  int64_t tokens = 0;
  int64_t seq_chunk = 0;
  int64_t seq_total = 0;
};

// The weight GEMMs of block i (q, k, v, o projections and the three MLP matrices).
UnitFlops block_gemm_flops(const ModelConfig& cfg, int64_t block, int64_t tokens);
// The attention core of block i (its mixer between the projections); backward_weight is 0.
UnitFlops attention_core_flops(const ModelConfig& cfg, int64_t block, const FlopShape& shape);
// Both: block i's unit.
UnitFlops block_flops(const ModelConfig& cfg, int64_t block, const FlopShape& shape);
// The head: 2*N*V*D forward (logits), as much for the input gradient, and for the weight
// gradient as much again when the whole head runs its passes fused (models/vocab_head.h:
// vocab_head_fused_floats, the logits kept), or twice that when it recomputes them tile by tile
// (vocab_split: the vocabulary-parallel passes, or a vocabulary too large to fuse).
UnitFlops head_flops(const ModelConfig& cfg, int64_t tokens, bool vocab_split = false);
// The embedding: zero (a lookup, and a scatter-add in the backward).
UnitFlops embedding_flops(const ModelConfig& cfg, int64_t tokens);

// Every unit in Model::units() order: [embedding, block 0 .. block L-1, head].
std::vector<UnitFlops> unit_flops(const ModelConfig& cfg, const FlopShape& shape);

}  // namespace strata
