#include "models/vocab_head.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/profile.h"
#include "core/vexp.h"

namespace strata {

namespace {

template <class T>
constexpr T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// float: core/vexp.h's exp (vectorised, the same bits on every code path); double, the
// finite-difference reference, keeps std::exp.
inline float exp_t(float x) { return exp_f32(x); }
inline double exp_t(double x) { return std::exp(x); }
// One row of a tile to bf16 (on the calling thread: rows are already spread over the threads).
template <class T>
void to_bf16_row(const T* x, bf16* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>)
    for_lanes(0, n, [&](auto lane, int64_t i) { vstore(y + i, vload(x + i, lane)); });
}
// An ignored row's terms, zeros where the products read them: row r of L16 when there is one,
// else the row itself.
template <class T>
void zero_row(T* row, bf16* L16, int64_t r, int64_t nc) {
  if (L16)
    std::fill(L16 + r * nc, L16 + (r + 1) * nc, bf16{0});
  else
    std::fill(row, row + nc, T(0));
}

// The tile actually used: at least 1 x 1, at most the whole problem (N x real rows).
VocabTiles clamp_tiles(VocabTiles t, int64_t N, int64_t real) {
  return {std::clamp<int64_t>(t.rows, 1, std::max<int64_t>(N, 1)),
          std::clamp<int64_t>(t.cols, 1, std::max<int64_t>(real, 1))};
}

void check_targets(const int32_t* targets, int64_t N, int64_t vocab) {
  for (int64_t n = 0; n < N; ++n)
    if (targets[n] < -1 || targets[n] >= vocab)
      throw StrataError("vocab head: target " + std::to_string(targets[n]) + " of row " +
                        std::to_string(n) + " outside [-1, " + std::to_string(vocab) + ")");
}

// The GEMM operands of the head in the shard's precision: fp32 (or double) as given, or, when
// the shard has bf16 weights, hn cast to bf16 once and each tile's softmax terms rounded to bf16
// row by row as they are formed (tile16(): online_softmax_tile and dlogits_tile fill it).
template <class T>
struct HeadOperands {
  const VocabShard<T>& shard;
  const T* hn;
  int64_t D;
  ActivationArray<bf16> hn16;  // [N, D] (bf16 only)
  ActivationArray<bf16> L16;   // one tile (bf16 only)
  // A token tile's running G [rows, D] (bf16 only), dense: oneDNN runs G += E W on the AMX tiles
  // only into rows D apart; into the records' rows (2 D + 3 apart) it takes its slower non-AMX
  // GEMM. s_pass_rows moves the finished rows into the records.
  ActivationArray<T> G;

  HeadOperands(const VocabShard<T>& s, const T* h, int64_t N, int64_t d, VocabTiles ts)
      : shard(s), hn(h), D(d) {
    if constexpr (std::is_same_v<T, float>)
      if (half()) {
        hn16 = ActivationArray<bf16>(N * D);
        to_bf16(hn, hn16.data(), N * D);
        L16 = ActivationArray<bf16>(ts.rows * ts.cols);
        G = ActivationArray<T>(ts.rows * D);
      }
  }
  bool half() const { return shard.weight_bf16 != nullptr; }
  // Where the tile's bf16 terms go, or nullptr (fp32, double): they stay in L.
  bf16* tile16() { return half() ? L16.data() : nullptr; }

  // L [nr, nc] = hn[n0 : n0 + nr] W[c0 : c0 + nc]^T, c0 a local row of the shard.
  void logits(int64_t n0, int64_t nr, int64_t c0, int64_t nc, T* L) const {
    if constexpr (std::is_same_v<T, float>)
      if (half())
        return gemm_bf16(false, true, nr, nc, D, 1.f, hn16.data() + n0 * D, D,
                         shard.weight_bf16 + c0 * D, D, 0.f, L, nc);
    gemm(false, true, nr, nc, D, T(1), hn + n0 * D, D, shard.weight + c0 * D, D, T(0), L, nc);
  }
  // G [nr, D] (rows ldg apart) += L [nr, nc] W[c0 : c0 + nc] (bf16: L16).
  void weighted_rows(const T* L, int64_t nr, int64_t c0, int64_t nc, T* G, int64_t ldg) {
    if constexpr (std::is_same_v<T, float>)
      if (half()) {
        return gemm_bf16(false, false, nr, D, nc, 1.f, L16.data(), nc, shard.weight_bf16 + c0 * D,
                         D, 1.f, G, ldg);
      }
    gemm(false, false, nr, D, nc, T(1), L, nc, shard.weight + c0 * D, D, T(1), G, ldg);
  }
  // dW[c0 : c0 + nc] += dL [nr, nc]^T hn[n0 : n0 + nr] (bf16: dL in L16).
  void weight_grad(const T* dL, int64_t n0, int64_t nr, int64_t c0, int64_t nc, T* dW) {
    if constexpr (std::is_same_v<T, float>)
      if (half()) {
        return gemm_bf16(true, false, nc, D, nr, 1.f, L16.data(), nc, hn16.data() + n0 * D, D, 1.f,
                         dW + c0 * D, D);
      }
    gemm(true, false, nc, D, nr, T(1), dL, nc, hn + n0 * D, D, T(1), dW + c0 * D, D);
  }
};

// One vocabulary tile of the online softmax for rows [0, nr) of the token tile (rec, G and y
// already offset to its first row; rec's records are R apart, VocabHeadPartial's layout; the
// rows' running G are ldg apart, in the records or apart from them). col0
// is the global vocabulary id of tile column 0. Picks up the target logit, folds the tile into
// the running max and sum, and leaves exp(l - m) (0 on ignored rows) for the caller's
// G += E W_tile in E [nr, nc] (which may be L itself) or, with L16 (the bf16 precision), rounded
// into L16 row by row from a row of scratch; L then keeps the logits.
template <class T>
void online_softmax_tile(const T* L, T* E, bf16* L16, int64_t nr, int64_t nc, int64_t col0,
                         const int32_t* y, T* rec, int64_t R, T* G_rows, int64_t ldg, int64_t D) {
  ProfScope prof_scope(ProfOp::elementwise);
  using P = VocabHeadPartial<T>;
#pragma omp parallel
  {
    std::vector<T> row(L16 ? static_cast<size_t>(nc) : 0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < nr; ++r) {
      const T* lr = L + r * nc;
      T* er = L16 ? row.data() : E + r * nc;
      if (y[r] < 0) {
        zero_row(er, L16, r, nc);
        continue;
      }
      T* q = rec + r * R;
      T &m = q[P::kMax], &s = q[P::kSum], *G = G_rows + r * ldg;
      const int64_t yc = static_cast<int64_t>(y[r]) - col0;
      if (yc >= 0 && yc < nc) q[D + 2] = lr[yc];  // the target logit (VocabHeadPartial::target_at)
      const T mt = max_of(lr, nc);                // core/vexp.h
      if (mt > m) {
        // The running max grew: s and G so far are relative to the old max, so scale them by
        // exp(m_old - m_new) <= 1 (0 on the row's first tile, where m_old = -inf and s, G = 0).
        // Every exponent stays <= 0: nothing overflows, whatever the logits' range.
        const T f = m == neg_inf<T>() ? T(0) : exp_t(m - mt);
        s *= f;
        for (int64_t j = 0; j < D; ++j) G[j] *= f;
        m = mt;
      }
      // A tile's terms summed in double: the float running sum then adds one per tile.
      if constexpr (std::is_same_v<T, float>) {
        s += static_cast<T>(exp_shift_sum(lr, er, nc, m));
        if (L16) to_bf16_row(er, L16 + r * nc, nc);
      } else {
        double sum = 0;
        for (int64_t c = 0; c < nc; ++c) {
          er[c] = std::exp(lr[c] - m);
          sum += er[c];
        }
        s += static_cast<T>(sum);
      }
    }
  }
}

// Wt of each record: the owner copies its target's weight row, every other rank leaves zeros.
template <class T>
void gather_target_rows(const VocabShard<T>& shard, int64_t real, const int32_t* targets, int64_t N,
                        int64_t D, VocabHeadPartial<T>& out) {
  for (int64_t n = 0; n < N; ++n) {
    const int64_t local = static_cast<int64_t>(targets[n]) - shard.row0;
    if (targets[n] < 0 || local < 0 || local >= real) continue;
    const T* w = shard.weight + local * D;
    std::copy(w, w + D, out.data() + n * out.row_len() + out.wt_at());
  }
}

// dlogits in place: loss_scale (exp(l - lse) - onehot(y)); 0 on ignored rows. With L16 (the
// bf16 precision) each row is also rounded into it while it is in cache.
template <class T>
void dlogits_tile(T* L, bf16* L16, int64_t nr, int64_t nc, int64_t col0, const int32_t* y,
                  const T* lse, T loss_scale) {
  ProfScope prof_scope(ProfOp::elementwise);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nr; ++r) {
    T* lr = L + r * nc;
    if (y[r] < 0) {
      zero_row(lr, L16, r, nc);
      continue;
    }
    if constexpr (std::is_same_v<T, float>)
      exp_shift_scale(lr, nc, lse[r], loss_scale);
    else
      for (int64_t c = 0; c < nc; ++c) lr[c] = loss_scale * std::exp(lr[c] - lse[r]);
    const int64_t yc = static_cast<int64_t>(y[r]) - col0;
    if (yc >= 0 && yc < nc) lr[yc] -= loss_scale;
    if (L16) to_bf16_row(lr, L16 + r * nc, nc);
  }
}

// The S pass over token rows [n0, n0 + nr) and every vocabulary tile: tile t's logits in
// L + t * tile_stride (stride 0: one slot, reused), its exp terms in E (nullptr: in L itself; bf16
// rounds them into the operands' tile instead), folded into the rows' records.
template <class T>
void s_pass_rows(const VocabShard<T>& shard, HeadOperands<T>& ops, const VocabTiles& ts,
                 int64_t real, const int32_t* targets, int64_t n0, int64_t nr, T* rec, int64_t R,
                 T* L, int64_t tile_stride, T* E) {
  const int64_t D = ops.D;
  T* rec_G = rec + n0 * R + VocabHeadPartial<T>::kG;  // records start with G = 0
  T* G = ops.half() ? ops.G.data() : rec_G;
  const int64_t ldg = ops.half() ? D : R;
  if (ops.half()) std::fill(G, G + nr * D, T(0));
  for (int64_t c0 = 0, t = 0; c0 < real; c0 += ts.cols, ++t) {
    const int64_t nc = std::min(ts.cols, real - c0);
    T* Lt = L + t * tile_stride;
    T* Et = E ? E : Lt;
    ops.logits(n0, nr, c0, nc, Lt);
    online_softmax_tile(Lt, Et, ops.tile16(), nr, nc, shard.row0 + c0, targets + n0, rec + n0 * R,
                        R, G, ldg, D);
    // G += exp(l - m) W_tile: the softmax-weighted sum of W's rows, not yet divided by S.
    ops.weighted_rows(Et, nr, c0, nc, G, ldg);
  }
  if (G != rec_G)
    for (int64_t r = 0; r < nr; ++r) std::copy(G + r * D, G + (r + 1) * D, rec_G + r * R);
}

// Resets the records (max -inf) and places the target rows' weights (Wt).
template <class T>
void start_records(const VocabShard<T>& shard, int64_t real, const int32_t* targets, int64_t N,
                   int64_t D, VocabHeadPartial<T>& out) {
  const int64_t R = out.row_len();
  T* rec = out.data();
  std::fill(rec, rec + out.size(), T(0));
  for (int64_t n = 0; n < N; ++n) rec[n * R + VocabHeadPartial<T>::kMax] = neg_inf<T>();
  gather_target_rows(shard, real, targets, N, D, out);
}

// A counted row's log-sum-exp from its final record: vocab_head_finish's formula, in one place.
template <class T>
T record_lse(const T* q) {
  return static_cast<T>(double(q[VocabHeadPartial<T>::kMax]) +
                        std::log(double(q[VocabHeadPartial<T>::kSum])));
}

}  // namespace

template <class T>
void vocab_head_local(const VocabShard<T>& shard, const T* hn, const int32_t* targets, int64_t N,
                      int64_t D, VocabTiles tiles, VocabHeadPartial<T>& out) {
  if (out.N() != N || out.D() != D)
    throw StrataError("vocab_head_local: partial buffer shape does not match N, D");
  check_targets(targets, N, shard.vocab);
  const int64_t real = shard.real_rows();
  start_records(shard, real, targets, N, D, out);
  if (real == 0 || N == 0) return;  // a shard of padding only: the identity of the combine
  const VocabTiles ts = clamp_tiles(tiles, N, real);
  ActivationArray<T> L(ts.rows * ts.cols);
  HeadOperands<T> ops(shard, hn, N, D, ts);
  // Token tiles outer: a row's running (m, s, G) is finished before the next token tile starts.
  for (int64_t n0 = 0; n0 < N; n0 += ts.rows)
    s_pass_rows(shard, ops, ts, real, targets, n0, std::min(ts.rows, N - n0), out.data(),
                out.row_len(), L.data(), 0, static_cast<T*>(nullptr));
}

template <class T>
double vocab_head_finish(const VocabHeadPartial<T>& p, const int32_t* targets, T loss_scale, T* lse,
                         T* dhn) {
  const int64_t N = p.N(), D = p.D(), R = p.row_len();
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) {
      lse[n] = T(0);
      if (dhn) std::fill(dhn + n * D, dhn + (n + 1) * D, T(0));
      continue;
    }
    const T* q = p.data() + n * R;
    const T *G = q + VocabHeadPartial<T>::kG, *Wt = q + p.wt_at();
    const double s = double(q[VocabHeadPartial<T>::kSum]);
    const double l = double(q[VocabHeadPartial<T>::kMax]) + std::log(s);
    lse[n] = record_lse(q);  // l, rounded to T
    row_loss[n] = l - double(q[p.target_at()]);
    if (!dhn) continue;
    // dL/dhn = scale (sum_v p_v W_v - W_y) = scale (G / S - Wt): G and Wt were summed apart
    // because the division by S could only happen after the sum.
    const T inv_s = static_cast<T>(1.0 / s);
    for (int64_t j = 0; j < D; ++j) dhn[n * D + j] = loss_scale * (G[j] * inv_s - Wt[j]);
  }
  double total = 0;  // fixed order: deterministic
  for (int64_t n = 0; n < N; ++n) total += row_loss[n];
  return total;
}

template <class T>
void vocab_head_weight_grad(const VocabShard<T>& shard, const T* hn, const int32_t* targets,
                            const T* lse, int64_t N, int64_t D, T loss_scale, VocabTiles tiles,
                            T* dW) {
  check_targets(targets, N, shard.vocab);
  const int64_t real = shard.real_rows();
  if (real == 0 || N == 0) return;
  const VocabTiles ts = clamp_tiles(tiles, N, real);
  ActivationArray<T> L(ts.rows * ts.cols);
  HeadOperands<T> ops(shard, hn, N, D, ts);
  // Vocabulary tiles outer: a [cols, D] block of dW takes every token tile's update in turn,
  // in token order (deterministic), and only real rows are ever written.
  for (int64_t c0 = 0; c0 < real; c0 += ts.cols) {
    const int64_t nc = std::min(ts.cols, real - c0);
    for (int64_t n0 = 0; n0 < N; n0 += ts.rows) {
      const int64_t nr = std::min(ts.rows, N - n0);
      ops.logits(n0, nr, c0, nc, L.data());
      dlogits_tile(L.data(), ops.tile16(), nr, nc, shard.row0 + c0, targets + n0, lse + n0,
                   loss_scale);
      ops.weight_grad(L.data(), n0, nr, c0, nc, dW);
    }
  }
}

namespace {

// The T pass of token rows [n0, n0 + nr) from the logits s_pass_rows kept: dW tile by tile.
// Each dW tile takes this token tile's update after the earlier token tiles', as in
// vocab_head_weight_grad, from the same logits: the same sums, the same bits.
template <class T>
void t_pass_rows(const VocabShard<T>& shard, HeadOperands<T>& ops, const VocabTiles& ts,
                 int64_t real, const int32_t* targets, const T* lse, T loss_scale, int64_t n0,
                 int64_t nr, T* L, int64_t tile_stride, T* dW) {
  for (int64_t c0 = 0, t = 0; c0 < real; c0 += ts.cols, ++t) {
    const int64_t nc = std::min(ts.cols, real - c0);
    T* Lt = L + t * tile_stride;
    dlogits_tile(Lt, ops.tile16(), nr, nc, shard.row0 + c0, targets + n0, lse + n0, loss_scale);
    ops.weight_grad(Lt, n0, nr, c0, nc, dW);
  }
}

// vocab_head_loss on one shard holding the whole vocabulary (nothing to combine): each token
// tile's statistics are final once its S pass is done, so its T pass follows at once from the
// logits kept (vocab_head_fused_floats), without computing them again.
template <class T>
double fused_head_loss(const VocabShard<T>& shard, const T* hn, const int32_t* targets, int64_t N,
                       int64_t D, T loss_scale, VocabTiles tiles, T* dhn, T* dW) {
  check_targets(targets, N, shard.vocab);
  ActivationArray<T> lse(N);
  VocabHeadPartial<T> p(N, D);
  const int64_t real = shard.real_rows(), R = p.row_len();
  start_records(shard, real, targets, N, D, p);
  {
    const VocabTiles ts = clamp_tiles(tiles, N, real);
    const int64_t stride = ts.rows * ts.cols;
    ActivationArray<T> L(vocab_head_fused_floats(N, real, tiles));  // every tile's logits
    // fp32 (double): the exp terms of the tile in hand; bf16 rounds them into the operands' tile
    const bool half = std::is_same_v<T, float> && shard.weight_bf16 != nullptr;
    ActivationArray<T> E(half ? 0 : stride);
    HeadOperands<T> ops(shard, hn, N, D, ts);
    for (int64_t n0 = 0; n0 < N; n0 += ts.rows) {
      const int64_t nr = std::min(ts.rows, N - n0);
      s_pass_rows(shard, ops, ts, real, targets, n0, nr, p.data(), R, L.data(), stride,
                  half ? static_cast<T*>(nullptr) : E.data());
      for (int64_t n = n0; n < n0 + nr; ++n)
        lse.data()[n] = targets[n] < 0 ? T(0) : record_lse(p.data() + n * R);
      t_pass_rows(shard, ops, ts, real, targets, lse.data(), loss_scale, n0, nr, L.data(), stride,
                  dW);
    }
  }
  return vocab_head_finish(p, targets, loss_scale, lse.data(), dhn);
}

}  // namespace

int64_t vocab_head_fused_floats(int64_t N, int64_t real, VocabTiles tiles) {
  if (N <= 0 || real <= 0) return 0;
  const VocabTiles ts = clamp_tiles(tiles, N, real);
  const int64_t n = (real + ts.cols - 1) / ts.cols * ts.rows * ts.cols;
  return n <= kFusedHeadLogits ? n : 0;
}

template <class T>
double vocab_head_loss(const VocabShard<T>& shard, const T* hn, const int32_t* targets, int64_t N,
                       int64_t D, T loss_scale, VocabTiles tiles, T* dhn, T* dW,
                       VocabReduce<T>& reduce) {
  if (dW && reduce.whole_vocabulary() && vocab_head_fused_floats(N, shard.real_rows(), tiles) > 0)
    return fused_head_loss(shard, hn, targets, N, D, loss_scale, tiles, dhn, dW);
  ActivationArray<T> lse(N);
  double loss = 0;
  {  // the partial statistics die before the T pass allocates its tile
    VocabHeadPartial<T> p(N, D);
    vocab_head_local(shard, hn, targets, N, D, tiles, p);
    reduce.combine(p);
    loss = vocab_head_finish(p, targets, loss_scale, lse.data(), dhn);
  }
  if (dW) vocab_head_weight_grad(shard, hn, targets, lse.data(), N, D, loss_scale, tiles, dW);
  return loss;
}

#define STRATA_VOCAB_HEAD_INSTANTIATE(T)                                                       \
  template void vocab_head_local<T>(const VocabShard<T>&, const T*, const int32_t*, int64_t,   \
                                    int64_t, VocabTiles, VocabHeadPartial<T>&);                \
  template double vocab_head_finish<T>(const VocabHeadPartial<T>&, const int32_t*, T, T*, T*); \
  template void vocab_head_weight_grad<T>(const VocabShard<T>&, const T*, const int32_t*,      \
                                          const T*, int64_t, int64_t, T, VocabTiles, T*);      \
  template double vocab_head_loss<T>(const VocabShard<T>&, const T*, const int32_t*, int64_t,  \
                                     int64_t, T, VocabTiles, T*, T*, VocabReduce<T>&);
STRATA_VOCAB_HEAD_INSTANTIATE(float)
STRATA_VOCAB_HEAD_INSTANTIATE(double)
#undef STRATA_VOCAB_HEAD_INSTANTIATE

}  // namespace strata
