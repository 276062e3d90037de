#pragma once
// LM head + cross-entropy split by vocabulary rows over a group of ranks (vocabulary parallelism,
// Yeung et al. 2024), computed without ever materialising [N x V] logits (Cut Cross-Entropy,
// Wijmans et al. 2024): logits exist one [tiles.rows x tiles.cols] tile at a time.
//
// Input hn [N, D] (the final RMSNorm's output) and targets [N] are the same on every rank of the
// group; each rank holds rows [row0, row0 + rows) of W_out. The math is split into passes with
// the communication left to the caller, between them:
//
//   S pass   vocab_head_local      per row: local max m, local sum s = sum_v exp(l_v - m),
//                                  G = sum_v exp(l_v - m) W_v, target logit (owner only),
//                                  Wt = W_target (owner only): one record [m | s G | t Wt]
//   caller   one all-reduce of the records in the log domain (core/scaled_rows.h): M = max m,
//            s and G rescaled to M and summed, t and Wt summed
//            vocab_head_finish          lse = M + log S, loss sum, dhn = scale (G / S - Wt)
//   T pass   vocab_head_weight_grad     recompute the logit tiles, dW += scale (p - onehot)^T hn
//
// Why one all-reduce suffices (the paper's one-barrier "Vocab-2"): the partial input gradient G
// is formed in S relative to the local max, and the combine rescales it to the global max as it
// sums, so no rank waits for a MAX all-reduce before it can start the SUM. The target logit and
// W_target are nonzero on the owner only, so summing selects them. The division by S must come
// after the sum, so W_target cannot be folded into G (that would need S, known only after the
// sum): it travels in its own slot Wt, and dL/dhn = scale * (G / S - Wt) is formed after the sum,
// identically on every rank.
//
// Ignored rows (target -1) contribute nothing: max -inf, s = 0, target logit 0, G = Wt = 0 on
// every rank; the combine leaves them so, and finish gives lse = 0, no loss, dhn = 0.
#include <cstdint>
#include <utility>
#include <vector>

#include "core/bf16.h"
#include "core/memory.h"

namespace strata {

// This rank's rows of the output weight. Global rows >= vocab are padding (the vocabulary padded
// to a multiple of the group size): they get no probability and no gradient, and their values
// are never read.
template <class T>
struct VocabShard {
  const T* weight = nullptr;  // [rows, D]; row r is global vocabulary row row0 + r
  int64_t row0 = 0, rows = 0;
  int64_t vocab = 0;  // unpadded global vocabulary size
  // The bf16 precision (core/precision.h): the same rows as bf16 (T = float only). Set, the
  // logits and both gradient GEMMs take bf16 operands (hn and the tiles cast as they are used)
  // with fp32 accumulation; the softmax statistics, the loss and every gradient stay fp32.
  const bf16* weight_bf16 = nullptr;
  // Rows [0, real_rows()) of the shard are real vocabulary entries; the rest is padding.
  int64_t real_rows() const {
    const int64_t r = vocab - row0;
    return r < 0 ? 0 : (r < rows ? r : rows);
  }
};

// Rows per shard when `vocab` is split over `parts` ranks: ceil(vocab / parts); the last shard is
// padded up to it.
inline int64_t vocab_shard_rows(int64_t vocab, int64_t parts) {
  return (vocab + parts - 1) / parts;
}

// The logits held at once: rows (tokens) x cols (vocabulary rows). Clamped to N and the shard.
// 256 x 2048 fp32 is 2 MiB, within a core's L2 for the softmax pass over a tile. The rows are
// the logits GEMMs' M and the weight-gradient GEMM's K: at 64 those ran at 55-65% of the
// GEMMs' rate on the step benchmark's shapes (bf16, 2 threads), at 256 at 90-105%.
struct VocabTiles {
  int64_t rows = 256;
  int64_t cols = 2048;
};

// A zeroed array charged to MemoryTracker's activations while it lives. Move-only.
template <class T>
class ActivationArray {
 public:
  ActivationArray() = default;
  explicit ActivationArray(int64_t n) : v_(static_cast<size_t>(charge(n))) {}
  ~ActivationArray() { release(); }
  ActivationArray(ActivationArray&& o) noexcept : v_(std::move(o.v_)) { o.v_.clear(); }
  ActivationArray& operator=(ActivationArray&& o) noexcept {
    if (this != &o) {
      release();
      v_ = std::move(o.v_);
      o.v_.clear();
    }
    return *this;
  }
  ActivationArray(const ActivationArray&) = delete;
  ActivationArray& operator=(const ActivationArray&) = delete;
  T* data() { return v_.data(); }
  const T* data() const { return v_.data(); }
  int64_t size() const { return static_cast<int64_t>(v_.size()); }

 private:
  static int64_t charge(int64_t n) {  // before allocating: the memory cap may refuse
    MemoryTracker::instance().charge(MemCategory::activations, n * int64_t(sizeof(T)));
    return n;
  }
  void release() {
    if (!v_.empty())
      MemoryTracker::instance().release(MemCategory::activations, size() * int64_t(sizeof(T)));
    v_.clear();
    v_.shrink_to_fit();
  }
  std::vector<T> v_;
};

// The per-row statistics passed between the passes: one record per row for the log-domain
// all-reduce (core/scaled_rows.h), [ m | s  G (D) | target_logit  Wt (D) ] with s and G scaled
// (relative to m). N (2D + 3) values: independent of the vocabulary.
template <class T>
class VocabHeadPartial {
 public:
  VocabHeadPartial(int64_t N, int64_t D) : N_(N), D_(D), rec_(N * (2 * D + 3)) {}
  int64_t N() const { return N_; }
  int64_t D() const { return D_; }
  int64_t row_len() const { return 2 * D_ + 3; }
  int64_t scaled() const { return D_ + 1; }  // s and G
  T* data() { return rec_.data(); }
  const T* data() const { return rec_.data(); }
  int64_t size() const { return rec_.size(); }
  // Offsets within a record.
  static constexpr int64_t kMax = 0, kSum = 1, kG = 2;
  int64_t target_at() const { return D_ + 2; }
  int64_t wt_at() const { return D_ + 3; }

 private:
  int64_t N_, D_;
  ActivationArray<T> rec_;
};

// S pass, this shard's part: fills every field of `out` (N, D as constructed) from scratch.
// targets are global ids, -1 = ignored; a target >= shard.vocab or < -1 throws StrataError.
template <class T>
void vocab_head_local(const VocabShard<T>& shard, const T* hn, const int32_t* targets, int64_t N,
                      int64_t D, VocabTiles tiles, VocabHeadPartial<T>& out);

// After the all-reduce of the records: writes lse [N] (kept for the T pass; 0 for ignored rows)
// and, when dhn != nullptr, dhn [N, D] = loss_scale * (G / S - Wt) (overwritten; 0 for ignored
// rows). Returns the loss SUM over counted rows, sum_n (lse_n - target_logit_n), in double.
template <class T>
double vocab_head_finish(const VocabHeadPartial<T>& p, const int32_t* targets, T loss_scale, T* lse,
                         T* dhn);

// T pass: dW [shard.rows, D] += (loss_scale (softmax - onehot))^T hn over the shard's real rows,
// recomputing the logits tile by tile from lse. Padding rows of dW are not touched.
template <class T>
void vocab_head_weight_grad(const VocabShard<T>& shard, const T* hn, const int32_t* targets,
                            const T* lse, int64_t N, int64_t D, T loss_scale, VocabTiles tiles,
                            T* dW);

// The caller's collective over the vocabulary group: the log-domain all-reduce of the records
// (core/scaled_rows.h), in place.
template <class T>
class VocabReduce {
 public:
  virtual ~VocabReduce() = default;
  virtual void combine(VocabHeadPartial<T>& p) = 0;
  // The shard is the whole vocabulary and combine does nothing: vocab_head_loss may then run
  // the passes fused (vocab_head_fused_floats).
  virtual bool whole_vocabulary() const { return false; }
};

// The one-process group: the shard is the whole vocabulary, nothing to reduce.
template <class T>
class IdentityVocabReduce final : public VocabReduce<T> {
 public:
  void combine(VocabHeadPartial<T>&) override {}
  bool whole_vocabulary() const override { return true; }
};

// The logits kept at most by the fused passes, in values: 16 MiB of fp32, a 256-token tile over
// a vocabulary of up to 16384 (the step benchmark's 8192: 8 MiB).
inline constexpr int64_t kFusedHeadLogits = int64_t{4} << 20;

// Values of logits vocab_head_loss keeps when it runs the passes fused: one token tile's over
// every vocabulary tile of the shard's `real` rows, so its T pass follows its S pass at once and
// reads them instead of computing them again (a quarter of the head's GEMM work). 0 when they
// would pass kFusedHeadLogits: the passes then run apart, the T pass recomputing each tile. Fused
// or not, the results are the same bits. It runs fused only on one shard holding the whole
// vocabulary (VocabReduce::whole_vocabulary) with dW wanted.
int64_t vocab_head_fused_floats(int64_t N, int64_t real, VocabTiles tiles);

// All passes in order with the all-reduce between them. Returns the global loss SUM (the
// same on every rank). dhn [N, D] overwritten when != nullptr; dW [shard.rows, D] accumulated
// (T pass) when != nullptr.
template <class T>
double vocab_head_loss(const VocabShard<T>& shard, const T* hn, const int32_t* targets, int64_t N,
                       int64_t D, T loss_scale, VocabTiles tiles, T* dhn, T* dW,
                       VocabReduce<T>& reduce);

}  // namespace strata
