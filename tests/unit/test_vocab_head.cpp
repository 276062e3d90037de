// The vocabulary-parallel LM head (models/vocab_head.h) and embedding (models/vocab_embedding.h):
// against today's head math (full logits + cross_entropy + linear backward), split over 2-4
// shards with a software all-reduce, ignored targets, finite differences in double, tile-size
// independence, the activation peak (never N x V), and the sharded embedding.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <functional>
#include <limits>
#include <thread>
#include <vector>

#include "core/dnnl_matmul.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/memory.h"
#include "core/scaled_rows.h"
#include "fd_check.h"
#include "models/cross_entropy.h"
#include "models/embedding.h"
#include "models/vocab_embedding.h"
#include "models/vocab_head.h"
#include "tests/unit/op_test_util.h"

using namespace strata;
using strata::test::randn;
using strata::test::rel_err;

namespace {

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-11;
}

constexpr double kPadSentinel = 12345.0;  // dW padding rows start here and must stay here

template <class T>
struct HeadResult {
  double loss = 0;
  std::vector<T> dhn, dW;  // dW: [V, D], the real rows only
};

// A head problem: hn [N, D], W [V, D], targets with some ignored rows.
template <class T>
struct Problem {
  int64_t N, V, D;
  std::vector<T> hn, W;
  std::vector<int32_t> y;
  T scale;
  Problem(int64_t n, int64_t v, int64_t d, uint64_t seed) : N(n), V(v), D(d) {
    hn = randn<T>(N * D, seed, 1.0);
    W = randn<T>(V * D, seed + 1, 0.7);
    y.resize(N);
    for (int64_t i = 0; i < N; ++i)
      y[i] = i % 5 == 3 ? -1 : static_cast<int32_t>((i * 11 + seed) % V);
    if (N > 1) y[1] = static_cast<int32_t>(V - 1);  // the last real row, next to the padding
    const auto counted = std::count_if(y.begin(), y.end(), [](int32_t t) { return t >= 0; });
    scale = T(1.0 / double(counted));
  }
};

// Today's head, Model::head_loss without its RMSNorm: full [N, V] logits, cross-entropy, then
// the input and weight gradients. float: the linear_* calls themselves; double: the same gemm.
template <class T>
HeadResult<T> reference_head(const Problem<T>& p) {
  const int64_t N = p.N, V = p.V, D = p.D;
  std::vector<T> logits(N * V);
  HeadResult<T> r{0, std::vector<T>(N * D), std::vector<T>(V * D, T(0))};
  if constexpr (std::is_same_v<T, float>)
    linear_forward(p.hn.data(), p.W.data(), logits.data(), N, V, D);
  else
    gemm(false, true, N, V, D, 1.0, p.hn.data(), D, p.W.data(), D, 0.0, logits.data(), V);
  r.loss = cross_entropy_forward_backward(logits.data(), p.y.data(), logits.data(), N, V, p.scale);
  if constexpr (std::is_same_v<T, float>) {
    linear_backward_input(logits.data(), p.W.data(), r.dhn.data(), N, V, D);
    linear_backward_weight(logits.data(), p.hn.data(), r.dW.data(), N, V, D);
  } else {
    gemm(false, false, N, D, V, 1.0, logits.data(), V, p.W.data(), D, 0.0, r.dhn.data(), D);
    gemm(true, false, V, D, N, 1.0, logits.data(), V, p.hn.data(), D, 1.0, r.dW.data(), D);
  }
  return r;
}

// The vocabulary padded to parts * ceil(V / parts) rows; padding rows hold NaN (never read).
template <class T>
std::vector<T> padded_weight(const Problem<T>& p, int64_t parts) {
  const int64_t rows = vocab_shard_rows(p.V, parts);
  std::vector<T> Wp(parts * rows * p.D, std::numeric_limits<T>::quiet_NaN());
  std::copy(p.W.begin(), p.W.end(), Wp.begin());
  return Wp;
}

template <class T>
std::vector<T> padded_grad(const Problem<T>& p, int64_t parts) {
  const int64_t rows = vocab_shard_rows(p.V, parts);
  std::vector<T> dWp(parts * rows * p.D, T(kPadSentinel));
  std::fill(dWp.begin(), dWp.begin() + p.V * p.D, T(0));
  return dWp;
}

template <class T>
void expect_padding_untouched(const std::vector<T>& dWp, const Problem<T>& p) {
  for (size_t i = p.V * p.D; i < dWp.size(); ++i) ASSERT_EQ(dWp[i], T(kPadSentinel)) << i;
}

// The passes of every shard in turn, with the all-reduces done in software between them, as a
// pipeline schedule would place them. Every "rank" must end with the same loss and dhn.
template <class T>
HeadResult<T> sharded_head(const Problem<T>& p, const std::vector<T>& Wp, std::vector<T>& dWp,
                           int64_t parts, VocabTiles tiles) {
  const int64_t N = p.N, D = p.D, rows = vocab_shard_rows(p.V, parts);
  std::vector<VocabShard<T>> shards;
  std::vector<VocabHeadPartial<T>> parts_out;
  parts_out.reserve(parts);
  for (int64_t r = 0; r < parts; ++r) {
    shards.push_back({Wp.data() + r * rows * D, r * rows, rows, p.V});
    parts_out.emplace_back(N, D);
    vocab_head_local(shards[r], p.hn.data(), p.y.data(), N, D, tiles, parts_out[r]);
  }
  const int64_t size = parts_out[0].size(), R = parts_out[0].row_len();
  std::vector<T> S(parts_out[0].data(), parts_out[0].data() + size);  // the all-reduce, rank order
  for (int64_t r = 1; r < parts; ++r)
    combine_scaled_rows(parts_out[r].data(), S.data(), N, R, parts_out[r].scaled());
  HeadResult<T> out{0, std::vector<T>(N * D), {}};
  for (int64_t r = 0; r < parts; ++r) {
    std::copy(S.begin(), S.end(), parts_out[r].data());
    std::vector<T> lse(N), dhn(N * D);
    const double loss =
        vocab_head_finish(parts_out[r], p.y.data(), p.scale, lse.data(), dhn.data());
    if (r == 0) {
      out.loss = loss;
      out.dhn = dhn;
    }
    EXPECT_EQ(loss, out.loss) << "rank " << r;
    EXPECT_EQ(dhn, out.dhn) << "rank " << r;
    vocab_head_weight_grad(shards[r], p.hn.data(), p.y.data(), lse.data(), N, D, p.scale, tiles,
                           dWp.data() + r * rows * D);
  }
  out.dW.assign(dWp.begin(), dWp.begin() + p.V * D);
  return out;
}

template <class T>
HeadResult<T> sharded_head(const Problem<T>& p, int64_t parts, VocabTiles tiles) {
  auto Wp = padded_weight(p, parts);
  auto dWp = padded_grad(p, parts);
  auto r = sharded_head(p, Wp, dWp, parts, tiles);
  expect_padding_untouched(dWp, p);
  return r;
}

template <class T>
void expect_same(const HeadResult<T>& a, const HeadResult<T>& b, double tolerance) {
  EXPECT_LE(std::abs(a.loss - b.loss), tolerance * std::abs(b.loss));
  EXPECT_LE(rel_err(a.dhn, b.dhn), tolerance);
  EXPECT_LE(rel_err(a.dW, b.dW), tolerance);
}

// A vocabulary group of threads: the all-reduce meets at a barrier and every rank combines the
// records in rank order, so all ranks get bitwise the same result.
template <class T>
class ThreadGroupReduce final : public VocabReduce<T> {
 public:
  struct Shared {
    explicit Shared(int64_t n) : bar(static_cast<std::ptrdiff_t>(n)), bufs(n) {}
    std::barrier<> bar;
    std::vector<T*> bufs;
  };
  ThreadGroupReduce(Shared& s, int64_t rank) : s_(s), rank_(rank) {}
  void combine(VocabHeadPartial<T>& p) override {
    T* x = p.data();
    s_.bufs[rank_] = x;
    s_.bar.arrive_and_wait();
    std::vector<T> acc(s_.bufs[0], s_.bufs[0] + p.size());
    for (size_t r = 1; r < s_.bufs.size(); ++r)
      combine_scaled_rows(s_.bufs[r], acc.data(), p.N(), p.row_len(), p.scaled());
    s_.bar.arrive_and_wait();  // every rank has read every buffer: now overwrite our own
    std::copy(acc.begin(), acc.end(), x);
  }

 private:
  Shared& s_;
  int64_t rank_;
};

using test::expect_grad;

}  // namespace

template <class T>
class VocabHead : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(VocabHead, Scalars);

TYPED_TEST(VocabHead, OneShardMatchesTodaysHead) {
  using T = TypeParam;
  const Problem<T> p(13, 37, 8, 1);
  const auto ref = reference_head(p);
  HeadResult<T> got{0, std::vector<T>(p.N * p.D), randn<T>(p.V * p.D, 9)};
  const std::vector<T> dW0 = got.dW;  // dW accumulates
  IdentityVocabReduce<T> one;
  got.loss = vocab_head_loss<T>({p.W.data(), 0, p.V, p.V}, p.hn.data(), p.y.data(), p.N, p.D,
                                p.scale, {4, 8}, got.dhn.data(), got.dW.data(), one);
  for (size_t i = 0; i < dW0.size(); ++i) got.dW[i] -= dW0[i];
  expect_same(got, ref, tol<T>());
}

TYPED_TEST(VocabHead, SplitOverTwoThreeFourShardsMatchesOneShard) {
  using T = TypeParam;
  const Problem<T> p(17, 37, 8, 2);  // 37 rows: padded to 38, 39, 40
  const auto ref = reference_head(p);
  for (int64_t parts : {2, 3, 4}) {
    SCOPED_TRACE(parts);
    expect_same(sharded_head(p, parts, {5, 4}), ref, tol<T>());
  }
}

TYPED_TEST(VocabHead, LossCompositionOverAThreadGroupMatches) {
  using T = TypeParam;
  const Problem<T> p(11, 37, 6, 3);
  const int64_t parts = 3, rows = vocab_shard_rows(p.V, parts);
  const auto ref = reference_head(p);
  auto Wp = padded_weight(p, parts);
  auto dWp = padded_grad(p, parts);
  std::vector<std::vector<T>> dhn(parts, std::vector<T>(p.N * p.D));
  std::vector<double> loss(parts);
  typename ThreadGroupReduce<T>::Shared shared(parts);
  std::vector<std::thread> ranks;
  for (int64_t r = 0; r < parts; ++r)
    ranks.emplace_back([&, r] {
      ThreadGroupReduce<T> reduce(shared, r);
      loss[r] = vocab_head_loss<T>({Wp.data() + r * rows * p.D, r * rows, rows, p.V}, p.hn.data(),
                                   p.y.data(), p.N, p.D, p.scale, {3, 5}, dhn[r].data(),
                                   dWp.data() + r * rows * p.D, reduce);
    });
  for (auto& t : ranks) t.join();
  expect_padding_untouched(dWp, p);
  for (int64_t r = 1; r < parts; ++r) {
    EXPECT_EQ(loss[r], loss[0]);
    EXPECT_EQ(dhn[r], dhn[0]);
  }
  const HeadResult<T> got{loss[0], dhn[0], std::vector<T>(dWp.begin(), dWp.begin() + p.V * p.D)};
  expect_same(got, ref, tol<T>());
}

TYPED_TEST(VocabHead, IgnoredRowsContributeNothing) {
  using T = TypeParam;
  Problem<T> p(9, 37, 5, 4);
  const auto ref = reference_head(p);
  const auto got = sharded_head(p, 4, {2, 3});
  expect_same(got, ref, tol<T>());
  for (int64_t n = 0; n < p.N; ++n) {
    if (p.y[n] >= 0) continue;
    for (int64_t j = 0; j < p.D; ++j) EXPECT_EQ(got.dhn[n * p.D + j], T(0));
  }
  // A batch with every row ignored: no loss, no gradient, no NaN from the -inf maxima.
  std::fill(p.y.begin(), p.y.end(), -1);
  const auto none = sharded_head(p, 3, {2, 3});
  EXPECT_EQ(none.loss, 0.0);
  for (T v : none.dhn) EXPECT_EQ(v, T(0));
  for (T v : none.dW) EXPECT_EQ(v, T(0));
}

TYPED_TEST(VocabHead, TargetsOutsideTheVocabularyThrow) {
  using T = TypeParam;
  Problem<T> p(4, 10, 3, 5);
  VocabHeadPartial<T> part(p.N, p.D);
  const VocabShard<T> shard{p.W.data() + 5 * p.D, 5, 5, 9};  // rows 5..9, row 9 is padding
  for (int32_t bad : {9, 10, -2}) {
    p.y[2] = bad;  // 9: a padded row can never be a target (targets < vocab)
    EXPECT_THROW(vocab_head_local(shard, p.hn.data(), p.y.data(), p.N, p.D, {}, part), StrataError);
  }
}

TEST(VocabHeadDouble, MatchesFiniteDifferences) {
  Problem<double> p(5, 7, 4, 6);  // 7 rows over 2 shards: one padding row
  auto loss = [&] {
    auto dWp = padded_grad(p, 2);
    return sharded_head(p, padded_weight(p, 2), dWp, 2, {2, 3}).loss * p.scale;
  };
  auto dWp = padded_grad(p, 2);
  const auto g = sharded_head(p, padded_weight(p, 2), dWp, 2, {2, 3});
  expect_grad(p.hn, g.dhn, loss);
  expect_grad(p.W, g.dW, loss);
}

TYPED_TEST(VocabHead, ResultsDoNotDependOnTheTiles) {
  using T = TypeParam;
  const double t = std::is_same_v<T, float> ? 1e-6 : 1e-13;
  const Problem<T> p(23, 37, 7, 7);
  const auto base = sharded_head(p, 3, {});
  for (VocabTiles tiles : {VocabTiles{1, 1}, VocabTiles{3, 5}, VocabTiles{1000, 1000}}) {
    SCOPED_TRACE(::testing::Message() << tiles.rows << "x" << tiles.cols);
    expect_same(sharded_head(p, 3, tiles), base, t);
  }
}

// One whole-vocabulary head loss over small random weights: the activations it charged at its
// peak and still holds after, and the loss.
struct HeadPeak {
  int64_t peak, left;
  double loss;
};
template <class T>
HeadPeak head_peak(int64_t N, int64_t V, int64_t D, VocabTiles tiles) {
  const auto hn = randn<T>(N * D, 8), W = randn<T>(V * D, 9, 0.02);
  std::vector<int32_t> y(N);
  for (int64_t n = 0; n < N; ++n) y[n] = static_cast<int32_t>((n * 4099) % V);
  std::vector<T> dhn(N * D), dW(V * D, T(0));
  IdentityVocabReduce<T> one;
  auto& mt = MemoryTracker::instance();
  mt.reset_peaks();
  const int act = static_cast<int>(MemCategory::activations);
  const int64_t before = mt.snapshot().current[act];
  const double loss = vocab_head_loss<T>({W.data(), 0, V, V}, hn.data(), y.data(), N, D, T(1.0 / N),
                                         tiles, dhn.data(), dW.data(), one);
  const auto snap = mt.snapshot();
  return {snap.peak[act] - before, snap.current[act] - before, loss};
}

TYPED_TEST(VocabHead, ActivationPeakIsOneTileNotTokensTimesVocab) {
  using T = TypeParam;
  const int64_t N = 128, V = 65536, D = 16;
  const VocabTiles tiles{96, 1024};
  // A token tile over the whole vocabulary passes the fused passes' bound: they run apart.
  ASSERT_EQ(vocab_head_fused_floats(N, V, tiles), 0);
  const HeadPeak h = head_peak<T>(N, V, D, tiles);
  const int64_t tile = tiles.rows * tiles.cols * int64_t(sizeof(T));
  EXPECT_GE(h.peak, tile);  // the tile is charged: the bound below is a real measurement
  EXPECT_LT(h.peak, tile + 3 * N * D * int64_t(sizeof(T)));
  EXPECT_LT(h.peak, N * V * int64_t(sizeof(T)) / 64);
  EXPECT_EQ(h.left, 0);
  EXPECT_NEAR(h.loss / N, std::log(double(V)), 0.05);  // small weights: nearly uniform
}

// The fused passes (one shard holding the whole vocabulary) keep one token tile's logits over
// the vocabulary, within kFusedHeadLogits, and nothing of N x V.
TYPED_TEST(VocabHead, FusedPassesKeepOneTokenTileOfLogits) {
  using T = TypeParam;
  const int64_t N = 64, V = 65536, D = 16;
  const VocabTiles tiles{16, 1024};
  const int64_t kept = vocab_head_fused_floats(N, V, tiles);
  ASSERT_EQ(kept, 16 * V);
  const HeadPeak h = head_peak<T>(N, V, D, tiles);
  const int64_t tile = tiles.rows * tiles.cols * int64_t(sizeof(T)), sz = int64_t(sizeof(T));
  EXPECT_GE(h.peak, kept * sz);
  EXPECT_LT(h.peak, kept * sz + tile + 3 * N * D * sz);  // the logits, one exp tile, the records
  EXPECT_LE(kept, kFusedHeadLogits);
  EXPECT_EQ(h.left, 0);
}

// vocab_head_loss on one whole-vocabulary shard (fused: each token tile's T pass right after
// its S pass, from the logits kept) is the separate passes (S, finish, T recomputing the
// logits) bit for bit: the same logits, the same statistics, every dW tile's updates in token
// order. Partial tiles both ways, ignored rows.
template <class T>
HeadResult<T> separate_passes(const VocabShard<T>& shard, const Problem<T>& p, VocabTiles tiles) {
  HeadResult<T> r{0, std::vector<T>(p.N * p.D), std::vector<T>(p.V * p.D, T(0))};
  VocabHeadPartial<T> part(p.N, p.D);
  std::vector<T> lse(p.N);
  vocab_head_local(shard, p.hn.data(), p.y.data(), p.N, p.D, tiles, part);
  r.loss = vocab_head_finish(part, p.y.data(), p.scale, lse.data(), r.dhn.data());
  vocab_head_weight_grad(shard, p.hn.data(), p.y.data(), lse.data(), p.N, p.D, p.scale, tiles,
                         r.dW.data());
  return r;
}

template <class T>
void expect_fused_is_separate(const VocabShard<T>& shard, const Problem<T>& p, VocabTiles tiles) {
  ASSERT_GT(vocab_head_fused_floats(p.N, p.V, tiles), 0);
  HeadResult<T> fused{0, std::vector<T>(p.N * p.D), std::vector<T>(p.V * p.D, T(0))};
  IdentityVocabReduce<T> one;
  fused.loss = vocab_head_loss<T>(shard, p.hn.data(), p.y.data(), p.N, p.D, p.scale, tiles,
                                  fused.dhn.data(), fused.dW.data(), one);
  const HeadResult<T> apart = separate_passes(shard, p, tiles);
  EXPECT_EQ(fused.loss, apart.loss);
  EXPECT_EQ(fused.dhn, apart.dhn);
  EXPECT_EQ(fused.dW, apart.dW);
}

TYPED_TEST(VocabHead, FusedPassesAreTheSeparatePassesBitForBit) {
  using T = TypeParam;
  const Problem<T> p(37, 300, 8, 5);  // tiles {8, 64}: 4 + 1 token tiles, 4 + 1 vocab tiles
  expect_fused_is_separate<T>({p.W.data(), 0, p.V, p.V}, p, {8, 64});
}

TEST(VocabHeadBf16, FusedPassesAreTheSeparatePassesBitForBit) {
  const Problem<float> p(37, 300, 8, 6);
  std::vector<bf16> W16(p.W.size());
  to_bf16(p.W.data(), W16.data(), static_cast<int64_t>(p.W.size()));
  expect_fused_is_separate<float>({p.W.data(), 0, p.V, p.V, W16.data()}, p, {8, 64});
}

TYPED_TEST(VocabHead, ShardedEmbeddingSumsToTheEmbedding) {
  using T = TypeParam;
  const int64_t V = 37, D = 6, N = 12;
  const auto E = randn<T>(V * D, 10), dh = randn<T>(N * D, 11);
  const std::vector<int32_t> tok = {36, 0, 5, 36, 12, 13, 0, 25, 26, 36, 1, 24};
  std::vector<T> h_ref(N * D), dE_ref(V * D, T(0));
  embedding_forward(E.data(), tok.data(), h_ref.data(), N, D);
  embedding_backward(tok.data(), dh.data(), dE_ref.data(), N, D);
  for (int64_t parts : {2, 3, 4}) {
    const int64_t rows = vocab_shard_rows(V, parts);
    std::vector<T> Ep(parts * rows * D, T(0)), dEp(parts * rows * D, T(0)), h(N * D, T(0));
    std::copy(E.begin(), E.end(), Ep.begin());
    for (int64_t r = 0; r < parts; ++r) {
      std::vector<T> hr(N * D, T(-1));  // overwritten entirely
      vocab_embedding_forward(Ep.data() + r * rows * D, r * rows, rows, tok.data(), hr.data(), N,
                              D);
      for (int64_t i = 0; i < N * D; ++i) h[i] += hr[i];  // the caller's SUM all-reduce
      vocab_embedding_backward(tok.data(), dh.data(), dEp.data() + r * rows * D, r * rows, rows, N,
                               D);
    }
    EXPECT_EQ(h, h_ref) << parts;
    EXPECT_EQ(std::vector<T>(dEp.begin(), dEp.begin() + V * D), dE_ref) << parts;
    for (size_t i = V * D; i < dEp.size(); ++i) EXPECT_EQ(dEp[i], T(0));
  }
}

namespace strata {
namespace {

// The bf16 precision: the three GEMMs take bf16 operands (weights, hn, the tiles), accumulate in
// fp32; the statistics stay fp32. Against the fp32 head: each logit carries ~2^-8 relative error
// of a dot product (bf16 rounding of both operands), so the loss (a log-sum-exp of them, ~ln V)
// moves by well under 1%, and the gradients by a small multiple of 2^-8 norm-wise; 2e-2 leaves
// room over what is measured, while a wrong operand is off by O(1).
TEST(VocabHeadBf16, AgreesWithTheFp32HeadWithinBf16Tolerance) {
  const Problem<float> p(40, 300, 32, 11);
  std::vector<bf16> W16(p.W.size());
  to_bf16(p.W.data(), W16.data(), static_cast<int64_t>(p.W.size()));
  IdentityVocabReduce<float> one;
  auto run = [&](const bf16* w16, VocabTiles tiles) {
    HeadResult<float> r{0, std::vector<float>(p.N * p.D), std::vector<float>(p.V * p.D, 0.f)};
    r.loss = vocab_head_loss<float>({p.W.data(), 0, p.V, p.V, w16}, p.hn.data(), p.y.data(), p.N,
                                    p.D, p.scale, tiles, r.dhn.data(), r.dW.data(), one);
    return r;
  };
  const auto f32 = run(nullptr, {16, 64}), b16 = run(W16.data(), {16, 64});
  EXPECT_LE(std::abs(b16.loss - f32.loss), 1e-2 * std::abs(f32.loss));
  EXPECT_GT(std::abs(b16.loss - f32.loss), 0);  // the GEMMs did run in bf16
  EXPECT_LE(rel_err(b16.dhn, f32.dhn), 2e-2);
  EXPECT_LE(rel_err(b16.dW, f32.dW), 2e-2);
  // Deterministic. Other tiles round differently (exp(l - m) is cast to bf16 relative to the
  // running max, which depends on the tile), within the bf16 tolerance of each other.
  const auto again = run(W16.data(), {16, 64});
  EXPECT_EQ(again.dhn, b16.dhn);
  EXPECT_EQ(again.dW, b16.dW);
  expect_same(run(W16.data(), {7, 33}), b16, 2e-3);
}

// Every bf16 GEMM of the head runs on oneDNN's brgemm kernels (AMX or AVX512-BF16) where the CPU
// has them: G += E W into the records' rows (2 D + 3 apart) took oneDNN's non-AMX "gemm:jit",
// 2-3x slower on the step benchmark's head.
TEST(VocabHeadBf16, EveryGemmRunsOnTheBf16Kernels) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "no native bf16 on this CPU";
  const Problem<float> p(64, 512, 64, 12);
  std::vector<bf16> W16(p.W.size());
  to_bf16(p.W.data(), W16.data(), static_cast<int64_t>(p.W.size()));
  const VocabShard<float> shard{p.W.data(), 0, p.V, p.V, W16.data()};
  HeadResult<float> r{0, std::vector<float>(p.N * p.D), std::vector<float>(p.V * p.D, 0.f)};
  IdentityVocabReduce<float> one;
  r.loss = vocab_head_loss<float>(shard, p.hn.data(), p.y.data(), p.N, p.D, p.scale, {32, 128},
                                  r.dhn.data(), r.dW.data(), one);
  separate_passes(shard, p, {32, 128});
  const std::vector<std::string> impls = dnnl_matmul_bf16_impls();
  ASSERT_FALSE(impls.empty());
  for (const std::string& impl : impls) EXPECT_EQ(impl.rfind("brg:", 0), 0u) << impl;
}

}  // namespace
}  // namespace strata
