// Tiled causal softmax attention with grouped-query heads and global positions: matches a naive
// full-score-matrix reference, offsets reproduce rows of the full computation, exact gradients
// (central differences in double), float agrees with double, and it is causal.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "core/softmax_attention.h"
#include "op_test_util.h"

namespace strata {
namespace {

using test::randn;
using test::rel_err;

using Vec = std::vector<double>;

// The textbook computation: the whole [Tq, Tk] score matrix per (b, h), masked by global
// position, softmax, times V.
void naive_attention(const SoftmaxAttentionShape& s, const Vec& q, const Vec& k, const Vec& v,
                     Vec& o, Vec& lse) {
  const double scale = 1.0 / std::sqrt(double(s.dh));
  o.assign(s.B * s.Tq * s.H * s.dh, 0.0);
  lse.assign(s.B * s.H * s.Tq, 0.0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t g = h / (s.H / s.Hkv);
      for (int64_t i = 0; i < s.Tq; ++i) {
        Vec sc(s.Tk, -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < s.Tk; ++j) {
          if (s.k_pos0 + j > s.q_pos0 + i) continue;
          double d = 0;
          for (int64_t c = 0; c < s.dh; ++c)
            d += q[((b * s.Tq + i) * s.H + h) * s.dh + c] *
                 k[((b * s.Tk + j) * s.Hkv + g) * s.dh + c];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < s.Tk; ++j) z += std::exp(sc[j] - mx);
        lse[(b * s.H + h) * s.Tq + i] = mx + std::log(z);
        for (int64_t j = 0; j < s.Tk; ++j)
          for (int64_t c = 0; c < s.dh; ++c)
            o[((b * s.Tq + i) * s.H + h) * s.dh + c] +=
                std::exp(sc[j] - mx) / z * v[((b * s.Tk + j) * s.Hkv + g) * s.dh + c];
      }
    }
}

struct Inputs {
  Vec q, k, v;
};
Inputs make_inputs(const SoftmaxAttentionShape& s, uint64_t seed) {
  return {randn<double>(s.B * s.Tq * s.H * s.dh, seed),
          randn<double>(s.B * s.Tk * s.Hkv * s.dh, seed + 1),
          randn<double>(s.B * s.Tk * s.Hkv * s.dh, seed + 2)};
}

TEST(SoftmaxAttention, MatchesNaiveReference) {
  struct Heads {
    int64_t H, Hkv;
  };
  for (Heads hh : {Heads{2, 2}, Heads{4, 2}, Heads{4, 1}})
    for (int64_t T : {1, 5, 70, 130}) {  // 70, 130: the last query tile is partial
      SCOPED_TRACE(::testing::Message() << "H=" << hh.H << " Hkv=" << hh.Hkv << " T=" << T);
      const SoftmaxAttentionShape s{2, T, T, hh.H, hh.Hkv, 4, 0, 0};
      const auto in = make_inputs(s, T);
      Vec o(in.q.size()), lse(s.B * s.H * T), o_ref, lse_ref;
      softmax_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data());
      naive_attention(s, in.q, in.k, in.v, o_ref, lse_ref);
      EXPECT_LT(rel_err(o, o_ref), 1e-12);
      EXPECT_LT(rel_err(lse, lse_ref), 1e-12);
    }
}

TEST(SoftmaxAttention, GeneralOffsetsMatchNaiveReference) {
  // Queries at global positions 10..29 against keys at 3..27 (some keys lie in the queries'
  // future, and the first queries see only part of the key block).
  const SoftmaxAttentionShape s{2, 20, 25, 4, 2, 4, 10, 3};
  const auto in = make_inputs(s, 50);
  Vec o(in.q.size()), lse(s.B * s.H * s.Tq), o_ref, lse_ref;
  softmax_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data());
  naive_attention(s, in.q, in.k, in.v, o_ref, lse_ref);
  EXPECT_LT(rel_err(o, o_ref), 1e-12);
  EXPECT_LT(rel_err(lse, lse_ref), 1e-12);
}

TEST(SoftmaxAttention, SecondHalfQueriesEqualRowsOfFullSequence) {
  // Sequence parallelism: rank 1 holds queries [T/2, T) and all-gathered keys [0, T). Its
  // outputs, lse and dq are the corresponding rows of the full computation, and its dk/dv equal
  // the full backward with the first half's output gradient set to zero.
  const int64_t B = 2, T = 100, H = 4, Hkv = 2, dh = 4, T0 = 50;
  const SoftmaxAttentionShape full{B, T, T, H, Hkv, dh, 0, 0};
  const SoftmaxAttentionShape half{B, T - T0, T, H, Hkv, dh, T0, 0};
  const auto in = make_inputs(full, 60);
  auto dO = randn<double>(in.q.size(), 61);
  const int64_t row = H * dh;
  auto rows = [&](const Vec& x) {
    Vec r;
    for (int64_t b = 0; b < B; ++b)
      r.insert(r.end(), x.begin() + (b * T + T0) * row, x.begin() + (b + 1) * T * row);
    return r;
  };
  for (int64_t b = 0; b < B; ++b)  // zero the first half's output gradient
    std::fill(dO.begin() + b * T * row, dO.begin() + (b * T + T0) * row, 0.0);

  Vec o(in.q.size()), lse(B * H * T), dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
  softmax_attention_forward(full, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data());
  softmax_attention_backward(full, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data(),
                             dO.data(), dq.data(), dk.data(), dv.data());

  const Vec qh = rows(in.q), dOh = rows(dO);
  Vec oh(qh.size()), lseh(B * H * (T - T0)), dqh(qh.size()), dkh(in.k.size()), dvh(in.v.size());
  softmax_attention_forward(half, qh.data(), in.k.data(), in.v.data(), oh.data(), lseh.data());
  softmax_attention_backward(half, qh.data(), in.k.data(), in.v.data(), oh.data(), lseh.data(),
                             dOh.data(), dqh.data(), dkh.data(), dvh.data());
  EXPECT_LT(rel_err(oh, rows(o)), 1e-12);
  Vec lse_rows;
  for (int64_t bh = 0; bh < B * H; ++bh)
    lse_rows.insert(lse_rows.end(), lse.begin() + bh * T + T0, lse.begin() + (bh + 1) * T);
  EXPECT_LT(rel_err(lseh, lse_rows), 1e-12);
  EXPECT_LT(rel_err(dqh, rows(dq)), 1e-12);
  EXPECT_LT(rel_err(dkh, dk), 1e-12);
  EXPECT_LT(rel_err(dvh, dv), 1e-12);
}

double loss(const SoftmaxAttentionShape& s, const Inputs& in, const Vec& R) {
  Vec o(in.q.size()), lse(s.B * s.H * s.Tq);
  softmax_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data());
  double l = 0;
  for (size_t i = 0; i < o.size(); ++i) l += o[i] * R[i];
  return l;
}

TEST(SoftmaxAttention, GradientsMatchFiniteDifferences) {
  // Tq = 67 spans two query tiles; GQA both ways; one case with offsets.
  for (const SoftmaxAttentionShape& s : {SoftmaxAttentionShape{1, 67, 67, 4, 2, 3, 0, 0},
                                         SoftmaxAttentionShape{2, 9, 9, 2, 1, 4, 0, 0},
                                         SoftmaxAttentionShape{1, 7, 12, 2, 2, 3, 8, 2}}) {
    SCOPED_TRACE(::testing::Message()
                 << "Tq=" << s.Tq << " Tk=" << s.Tk << " H=" << s.H << " Hkv=" << s.Hkv);
    Inputs in = make_inputs(s, 70 + s.Tq);
    const Vec R = randn<double>(in.q.size(), 80);
    Vec o(in.q.size()), lse(s.B * s.H * s.Tq), dq(in.q.size()), dk(in.k.size()), dv(in.v.size());
    softmax_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data());
    softmax_attention_backward(s, in.q.data(), in.k.data(), in.v.data(), o.data(), lse.data(),
                               R.data(), dq.data(), dk.data(), dv.data());
    const double h = 1e-6;
    auto check = [&](Vec& x, const Vec& grad, const char* name) {
      for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double lp = loss(s, in, R);
        x[i] = x0 - h;
        const double lm = loss(s, in, R);
        x[i] = x0;
        const double fd = (lp - lm) / (2 * h);
        EXPECT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
      }
    };
    check(in.q, dq, "dq");
    check(in.k, dk, "dk");
    check(in.v, dv, "dv");
  }
}

TEST(SoftmaxAttention, FloatMatchesDouble) {
  const SoftmaxAttentionShape s{2, 100, 100, 4, 2, 16, 0, 0};
  const auto in = make_inputs(s, 90);
  const Vec dO = randn<double>(in.q.size(), 91);
  using F = std::vector<float>;
  const F qf(in.q.begin(), in.q.end()), kf(in.k.begin(), in.k.end()), vf(in.v.begin(), in.v.end()),
      dOf(dO.begin(), dO.end());
  const Vec q(qf.begin(), qf.end()), k(kf.begin(), kf.end()), v(vf.begin(), vf.end()),
      dOd(dOf.begin(), dOf.end());
  const size_t nq = q.size(), nk = k.size(), nl = s.B * s.H * s.Tq;
  Vec o(nq), lse(nl), dq(nq), dk(nk), dv(nk);
  F of(nq), lsef(nl), dqf(nq), dkf(nk), dvf(nk);
  softmax_attention_forward(s, q.data(), k.data(), v.data(), o.data(), lse.data());
  softmax_attention_backward(s, q.data(), k.data(), v.data(), o.data(), lse.data(), dOd.data(),
                             dq.data(), dk.data(), dv.data());
  softmax_attention_forward(s, qf.data(), kf.data(), vf.data(), of.data(), lsef.data());
  softmax_attention_backward(s, qf.data(), kf.data(), vf.data(), of.data(), lsef.data(), dOf.data(),
                             dqf.data(), dkf.data(), dvf.data());
  EXPECT_LT(rel_err(of, o), 1e-4);
  EXPECT_LT(rel_err(lsef, lse), 1e-4);
  EXPECT_LT(rel_err(dqf, dq), 1e-4);
  EXPECT_LT(rel_err(dkf, dk), 1e-4);
  EXPECT_LT(rel_err(dvf, dv), 1e-4);
}

template <class T>
void check_causality() {
  // T = 70 so the probe positions straddle the query tile boundary at 64.
  const SoftmaxAttentionShape s{2, 70, 70, 4, 2, 4, 0, 0};
  const auto in = make_inputs(s, 95);
  const std::vector<T> q0(in.q.begin(), in.q.end()), k0(in.k.begin(), in.k.end()),
      v0(in.v.begin(), in.v.end());
  std::vector<T> o0(q0.size()), lse(s.B * s.H * s.Tq);
  softmax_attention_forward(s, q0.data(), k0.data(), v0.data(), o0.data(), lse.data());
  for (int64_t p : {3, 63, 64, 66})
    for (int which = 0; which < 3; ++which) {
      SCOPED_TRACE(::testing::Message() << "p=" << p << " tensor="
                                        << "qkv"[which]);
      auto q = q0, k = k0, v = v0;
      auto& x = which == 0 ? q : which == 1 ? k : v;
      const int64_t row = which == 0 ? s.H * s.dh : s.Hkv * s.dh;
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t c = 0; c < row; ++c) x[(b * s.Tq + p) * row + c] += T(0.5);
      std::vector<T> o(q.size());
      softmax_attention_forward(s, q.data(), k.data(), v.data(), o.data(), lse.data());
      const int64_t orow = s.H * s.dh;
      double later = 0;
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.Tq; ++t)
          for (int64_t c = 0; c < orow; ++c) {
            const size_t i = (b * s.Tq + t) * orow + c;
            if (t < p)
              ASSERT_EQ(o[i], o0[i]) << "output at t=" << t << " saw position " << p;
            else
              later = std::max(later, std::abs(double(o[i]) - double(o0[i])));
          }
      EXPECT_GT(later, 1e-3);
    }
}

TEST(SoftmaxAttention, CausalDouble) { check_causality<double>(); }
TEST(SoftmaxAttention, CausalFloat) { check_causality<float>(); }

// The bf16 precision's pair against the fp32 op on the same bf16 values (q, k, v rounded; the
// backward reads o as saved, rounded). Its products round P, dout and dS to bf16 (relative
// rounding 2^-9) and sum in fp32, so the results agree norm-wise to a few parts in a thousand
// (measured 1.6e-3 for o, 2.3e-3 to 3.1e-3 for the gradients): o within 5e-3, the gradients
// within 8e-3, while lse (fp32 sums of exact bf16 products, 8e-8 measured) is fp32-close. Shapes:
// grouped heads, partial query blocks, a later sequence-parallel rank's queries (offset), keys no
// query sees (their dk, dv exactly 0), and a key range long enough that a query block is cut below
// 128 rows.
struct Bf16Case {
  SoftmaxAttentionShape s;
  int64_t unseen_from;  // keys [unseen_from, Tk) lie past every query's horizon
};

struct AttentionRun {
  std::vector<float> o, lse, dq, dk, dv;
};

// x as the bf16 precision stores it.
std::vector<bf16> stored(const std::vector<float>& x) {
  std::vector<bf16> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = fp32_to_bf16(x[i]);
  return h;
}

AttentionRun run_bf16_pair(const SoftmaxAttentionShape& s, const std::vector<float>& q,
                           const std::vector<float>& k, const std::vector<float>& v,
                           const std::vector<float>& dout) {
  AttentionRun r{std::vector<float>(q.size()), std::vector<float>(s.B * s.H * s.Tq),
                 std::vector<float>(q.size(), 7.f), std::vector<float>(k.size(), 7.f),
                 std::vector<float>(k.size(), 7.f)};
  softmax_attention_forward_bf16(s, q.data(), k.data(), v.data(), r.o.data(), r.lse.data());
  const std::vector<bf16> qh = stored(q), kh = stored(k), vh = stored(v), oh = stored(r.o);
  softmax_attention_backward(s, qh.data(), kh.data(), vh.data(), oh.data(), r.lse.data(),
                             dout.data(), r.dq.data(), r.dk.data(), r.dv.data());
  return r;
}

TEST(SoftmaxAttention, Bf16ProductsAgreeWithFp32OnTheirValues) {
  const Bf16Case cases[] = {
      {{2, 70, 134, 4, 2, 16, 64, 0}, 134},    // offset queries, every key seen
      {{2, 70, 134, 4, 4, 16, 0, 0}, 70},      // keys 70.. seen by no query
      {{1, 150, 150, 6, 2, 32, 0, 0}, 150},    // group of 3, a partial second block
      {{1, 40, 2100, 4, 1, 8, 2060, 0}, 2100}  // long keys: blocks of fewer rows
  };
  for (const Bf16Case& c : cases) {
    const SoftmaxAttentionShape& s = c.s;
    SCOPED_TRACE(::testing::Message() << "Tq=" << s.Tq << " Tk=" << s.Tk << " H=" << s.H
                                      << " Hkv=" << s.Hkv << " q_pos0=" << s.q_pos0);
    const Inputs in = make_inputs(s, 31);
    auto rounded = [](const Vec& x) {
      std::vector<float> f(x.size());
      for (size_t i = 0; i < x.size(); ++i)
        f[i] = bf16_to_fp32(fp32_to_bf16(static_cast<float>(x[i])));
      return f;
    };
    const std::vector<float> q = rounded(in.q), k = rounded(in.k), v = rounded(in.v);
    const std::vector<float> dout = randn<float>(q.size(), 32);
    const AttentionRun got = run_bf16_pair(s, q, k, v, dout);

    std::vector<float> o(q.size()), lse(s.B * s.H * s.Tq), dq(q.size()), dk(k.size()), dv(k.size());
    softmax_attention_forward(s, q.data(), k.data(), v.data(), o.data(), lse.data());
    const std::vector<float> o_saved = rounded(Vec(got.o.begin(), got.o.end()));
    softmax_attention_backward(s, q.data(), k.data(), v.data(), o_saved.data(), lse.data(),
                               dout.data(), dq.data(), dk.data(), dv.data());
    EXPECT_LT(test::rel_norm(got.o, o), 5e-3);
    EXPECT_LT(rel_err(got.lse, lse), 1e-6);
    EXPECT_LT(test::rel_norm(got.dq, dq), 8e-3);
    EXPECT_LT(test::rel_norm(got.dk, dk), 8e-3);
    EXPECT_LT(test::rel_norm(got.dv, dv), 8e-3);
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t j = c.unseen_from; j < s.Tk; ++j)
        for (int64_t e = 0; e < s.Hkv * s.dh; ++e) {
          const int64_t i = (b * s.Tk + j) * s.Hkv * s.dh + e;
          ASSERT_EQ(got.dk[i], 0.f) << "key " << j;
          ASSERT_EQ(got.dv[i], 0.f) << "key " << j;
        }
    // Run to run, the same bits.
    const AttentionRun again = run_bf16_pair(s, q, k, v, dout);
    EXPECT_EQ(again.o, got.o);
    EXPECT_EQ(again.lse, got.lse);
    EXPECT_EQ(again.dq, got.dq);
    EXPECT_EQ(again.dk, got.dk);
    EXPECT_EQ(again.dv, got.dv);
    // On q, k, v stored in bf16 (as the bf16 precision saves them) the forward is the same op
    // bit for bit, its o the fp32 one rounded once.
    const std::vector<bf16> qh = stored(q), kh = stored(k), vh = stored(v);
    std::vector<bf16> oh(q.size());
    std::vector<float> lseh(got.lse.size());
    softmax_attention_forward_bf16(s, qh.data(), kh.data(), vh.data(), oh.data(), lseh.data());
    EXPECT_EQ(lseh, got.lse);
    for (size_t i = 0; i < oh.size(); ++i) ASSERT_EQ(oh[i], fp32_to_bf16(got.o[i])) << i;
  }
}

// Its workspace is charged to activations while it runs and returned after, and it is the size
// the memory plan is told.
TEST(SoftmaxAttention, Bf16WorkspaceIsChargedAsPlanned) {
  const SoftmaxAttentionShape s{2, 70, 134, 4, 2, 16, 64, 0};
  const Inputs in = make_inputs(s, 5);
  std::vector<float> q(in.q.begin(), in.q.end()), k(in.k.begin(), in.k.end()),
      v(in.v.begin(), in.v.end());
  const std::vector<float> dout = randn<float>(q.size(), 6);
  MemoryTracker& mt = MemoryTracker::instance();
  const int64_t act = static_cast<int>(MemCategory::activations);
  const int64_t before = mt.snapshot().current[act];
  mt.reset_peaks();
  run_bf16_pair(s, q, k, v, dout);
  const MemorySnapshot after = mt.snapshot();
  EXPECT_EQ(after.current[act], before);
  const int64_t bwd = softmax_attention_bf16_workspace_floats(s, true) * 4;
  EXPECT_GT(bwd, softmax_attention_bf16_workspace_floats(s, false) * 4);
  EXPECT_EQ(after.peak[act] - before, bwd);
}

TEST(SoftmaxAttention, RejectsQueriesBeforeAllKeys) {
  // Query 0 at position 2, key 0 at position 5: query 0 would see no key at all.
  const SoftmaxAttentionShape s{1, 4, 4, 1, 1, 2, 2, 5};
  std::vector<float> q(8), k(8), v(8), o(8), lse(4);
  EXPECT_THROW(softmax_attention_forward(s, q.data(), k.data(), v.data(), o.data(), lse.data()),
               StrataError);
}

}  // namespace
}  // namespace strata
