// Chunked linear attention: equals the token-by-token recurrence for any chunk length (T not a
// multiple of it), carries state_in/state_out, has exact gradients (central differences in
// double), float agrees with double, and is causal.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/linear_attention.h"
#include "op_test_util.h"

namespace strata {
namespace {

using test::randn;
using test::rel_err;

using Vec = std::vector<double>;

Vec gammas(int64_t H, int decay) {
  // decay 0: none, 1: retnet, 2: strong (γ well below 1, so every power γ^e matters).
  if (decay == 2) {
    Vec g(H);
    for (int64_t h = 0; h < H; ++h) g[h] = 0.6 + 0.1 * double(h);
    return g;
  }
  const auto f = linear_attention_gammas(H, decay == 1);
  return Vec(f.begin(), f.end());
}

struct Inputs {
  Vec q, k, v, state;
};

Inputs make_inputs(const LinearAttentionShape& s, uint64_t seed) {
  const size_t n = s.B * s.T * s.H * s.dh, ns = s.B * s.H * s.dh * s.dh;
  return {randn<double>(n, seed), randn<double>(n, seed + 1), randn<double>(n, seed + 2),
          randn<double>(ns, seed + 3)};
}

TEST(LinearAttention, Gammas) {
  const auto r = linear_attention_gammas(3, true);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_FLOAT_EQ(r[0], 1.f - 1.f / 32);
  EXPECT_FLOAT_EQ(r[1], 1.f - 1.f / 64);
  EXPECT_FLOAT_EQ(r[2], 1.f - 1.f / 128);
  for (float g : linear_attention_gammas(4, false)) EXPECT_EQ(g, 1.f);
}

TEST(LinearAttention, ChunkedMatchesRecurrence) {
  for (int decay : {0, 1, 2})
    for (int64_t T : {1, 5, 16, 37})
      for (int64_t C : {1, 3, 4, 16, 64})
        for (bool with_state : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "decay=" << decay << " T=" << T << " C=" << C
                                            << " state_in=" << with_state);
          const LinearAttentionShape s{2, T, 3, 4, C};
          const auto in = make_inputs(s, 10 + T);
          const Vec g = gammas(s.H, decay);
          const double* st = with_state ? in.state.data() : nullptr;
          Vec o(in.q.size()), o_ref(in.q.size()), so(in.state.size()), so_ref(in.state.size());
          linear_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), g.data(), o.data(), st,
                                   so.data());
          linear_attention_reference(s, in.q.data(), in.k.data(), in.v.data(), g.data(),
                                     o_ref.data(), st, so_ref.data());
          EXPECT_LT(rel_err(o, o_ref), 1e-12);
          EXPECT_LT(rel_err(so, so_ref), 1e-12);
        }
}

TEST(LinearAttention, StateChainsAcrossCalls) {
  // Running [0, 11) then [11, 29) with state_out -> state_in equals one call over [0, 29):
  // the contract LASP-2 builds on.
  const int64_t T = 29, T1 = 11, H = 2, dh = 4, B = 2;
  const LinearAttentionShape s{B, T, H, dh, 4};
  const auto in = make_inputs(s, 7);
  const Vec g = gammas(H, 2);
  Vec o(in.q.size()), so(in.state.size());
  linear_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), g.data(), o.data(), nullptr,
                           so.data());
  auto slice = [&](const Vec& x, int64_t t0, int64_t t1) {
    Vec r;
    for (int64_t b = 0; b < B; ++b)
      r.insert(r.end(), x.begin() + (b * T + t0) * H * dh, x.begin() + (b * T + t1) * H * dh);
    return r;
  };
  Vec mid(in.state.size()), fin(in.state.size());
  for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, T1}, {T1, T}}) {
    const LinearAttentionShape sp{B, t1 - t0, H, dh, 4};
    const Vec q = slice(in.q, t0, t1), k = slice(in.k, t0, t1), v = slice(in.v, t0, t1);
    Vec op(q.size());
    linear_attention_forward(sp, q.data(), k.data(), v.data(), g.data(), op.data(),
                             t0 == 0 ? nullptr : mid.data(), t0 == 0 ? mid.data() : fin.data());
    EXPECT_LT(rel_err(op, slice(o, t0, t1)), 1e-12);
  }
  EXPECT_LT(rel_err(fin, so), 1e-12);
}

// loss = Σ o ⊙ R + Σ state_out ⊙ R2 through the chunked double path.
double loss(const LinearAttentionShape& s, const Inputs& in, const Vec& g, bool with_state,
            const Vec& R, const Vec& R2) {
  Vec o(in.q.size()), so(in.state.size());
  linear_attention_forward(s, in.q.data(), in.k.data(), in.v.data(), g.data(), o.data(),
                           with_state ? in.state.data() : nullptr, so.data());
  double l = 0;
  for (size_t i = 0; i < o.size(); ++i) l += o[i] * R[i];
  for (size_t i = 0; i < so.size(); ++i) l += so[i] * R2[i];
  return l;
}

TEST(LinearAttention, GradientsMatchFiniteDifferences) {
  for (int decay : {0, 1, 2})
    for (bool with_state : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "decay=" << decay << " state_in=" << with_state);
      const LinearAttentionShape s{2, 7, 2, 3, 3};  // chunks of 3, 3, 1
      Inputs in = make_inputs(s, 100 + decay);
      const Vec g = gammas(s.H, decay);
      const Vec R = randn<double>(in.q.size(), 200), R2 = randn<double>(in.state.size(), 201);
      Vec dq(in.q.size()), dk(in.q.size()), dv(in.q.size()), ds(in.state.size());
      linear_attention_backward(s, in.q.data(), in.k.data(), in.v.data(), g.data(), R.data(),
                                dq.data(), dk.data(), dv.data(),
                                with_state ? in.state.data() : nullptr, R2.data(), ds.data());
      const double h = 1e-6;
      auto check = [&](Vec& x, const Vec& grad, const char* name) {
        for (size_t i = 0; i < x.size(); ++i) {
          const double x0 = x[i];
          x[i] = x0 + h;
          const double lp = loss(s, in, g, with_state, R, R2);
          x[i] = x0 - h;
          const double lm = loss(s, in, g, with_state, R, R2);
          x[i] = x0;
          const double fd = (lp - lm) / (2 * h);
          EXPECT_NEAR(grad[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << name << "[" << i << "]";
        }
      };
      check(in.q, dq, "dq");
      check(in.k, dk, "dk");
      check(in.v, dv, "dv");
      if (with_state) check(in.state, ds, "dstate_in");
    }
}

TEST(LinearAttention, BackwardWithoutStateGradsMatchesZeroState) {
  // dstate_out = nullptr means zero; state_in = nullptr means a zero state.
  const LinearAttentionShape s{1, 9, 2, 4, 4};
  const auto in = make_inputs(s, 300);
  const Vec g = gammas(s.H, 1);
  const Vec dO = randn<double>(in.q.size(), 301), zeros(in.state.size(), 0.0);
  Vec a[3], b[3];
  for (auto* x : {a, b})
    for (int i = 0; i < 3; ++i) x[i].resize(in.q.size());
  linear_attention_backward(s, in.q.data(), in.k.data(), in.v.data(), g.data(), dO.data(),
                            a[0].data(), a[1].data(), a[2].data(), nullptr, nullptr, nullptr);
  Vec ds(in.state.size());
  linear_attention_backward(s, in.q.data(), in.k.data(), in.v.data(), g.data(), dO.data(),
                            b[0].data(), b[1].data(), b[2].data(), zeros.data(), zeros.data(),
                            ds.data());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a[i], b[i]);
}

// The float kernel (fp32 or bf16 operands) against the double one on the same float inputs.
void expect_float_matches_double(Precision p, double tol) {
  // dh = 16 and chunk 16 so the float path runs real GEMM tiles; T = 53 leaves a short (padded)
  // chunk; big enough that forward and backward take the OpenMP-threaded path.
  const LinearAttentionShape s{2, 53, 4, 16, 16};
  LinearAttentionShape sp = s;
  sp.precision = p;
  const auto in = make_inputs(s, 400);
  const Vec g = gammas(s.H, 1);
  const Vec dO = randn<double>(in.q.size(), 401), dS = randn<double>(in.state.size(), 402);
  using F = std::vector<float>;
  auto to_f = [](const Vec& x) { return F(x.begin(), x.end()); };
  const F qf = to_f(in.q), kf = to_f(in.k), vf = to_f(in.v), sf = to_f(in.state), gf = to_f(g),
          dOf = to_f(dO), dSf = to_f(dS);
  // Round the inputs to float first so both paths see identical numbers.
  const Vec q(qf.begin(), qf.end()), k(kf.begin(), kf.end()), v(vf.begin(), vf.end()),
      st(sf.begin(), sf.end()), gd(gf.begin(), gf.end());
  const size_t n = q.size(), ns = st.size();
  Vec o(n), so(ns), dq(n), dk(n), dv(n), ds(ns);
  F of(n), sof(ns), dqf(n), dkf(n), dvf(n), dsf(ns);
  linear_attention_forward(s, q.data(), k.data(), v.data(), gd.data(), o.data(), st.data(),
                           so.data());
  linear_attention_forward(sp, qf.data(), kf.data(), vf.data(), gf.data(), of.data(), sf.data(),
                           sof.data());
  linear_attention_backward(s, q.data(), k.data(), v.data(), gd.data(), dO.data(), dq.data(),
                            dk.data(), dv.data(), st.data(), dS.data(), ds.data());
  linear_attention_backward(sp, qf.data(), kf.data(), vf.data(), gf.data(), dOf.data(), dqf.data(),
                            dkf.data(), dvf.data(), sf.data(), dSf.data(), dsf.data());
  EXPECT_LT(rel_err(of, o), tol);
  EXPECT_LT(rel_err(sof, so), tol);
  EXPECT_LT(rel_err(dqf, dq), tol);
  EXPECT_LT(rel_err(dkf, dk), tol);
  EXPECT_LT(rel_err(dvf, dv), tol);
  EXPECT_LT(rel_err(dsf, ds), tol);
}

TEST(LinearAttention, FloatMatchesDouble) { expect_float_matches_double(Precision::fp32, 1e-4); }

// bf16 operands round q, k, v, the scores and the states (relative error 2^-9 each) as they
// enter the products, and accumulate in fp32: sums of such products agree to about 2^-8 of
// their magnitude, so 1e-2 in the norm-wise error (measured: about 3e-3) and not the fp32 1e-4.
TEST(LinearAttention, Bf16OperandsMatchDoubleToBf16Rounding) {
  expect_float_matches_double(Precision::bf16, 1e-2);
}

// The bf16 path really rounds (it is not the fp32 path under another name).
TEST(LinearAttention, Bf16OperandsDifferFromFp32) {
  const LinearAttentionShape s{1, 40, 2, 16, 16};
  LinearAttentionShape sb = s;
  sb.precision = Precision::bf16;
  const auto in = make_inputs(s, 700);
  const std::vector<float> q(in.q.begin(), in.q.end()), k(in.k.begin(), in.k.end()),
      v(in.v.begin(), in.v.end());
  const auto g = linear_attention_gammas(s.H, true);
  std::vector<float> o32(q.size()), o16(q.size());
  linear_attention_forward(s, q.data(), k.data(), v.data(), g.data(), o32.data(), nullptr, nullptr);
  linear_attention_forward(sb, q.data(), k.data(), v.data(), g.data(), o16.data(), nullptr,
                           nullptr);
  EXPECT_NE(o32, o16);
  EXPECT_LT(rel_err(o16, o32), 1e-2);
}

// q, k, v stored in bf16 (what the bf16 precision's block hands over) are the float op on their
// values, bit for bit: the kernel packs them as they are instead of rounding fp32 copies.
TEST(LinearAttention, Bf16StoredInputsAreTheFloatOpOnTheirValues) {
  LinearAttentionShape s{2, 53, 4, 16, 16};  // a padded last chunk, the threaded path
  s.precision = Precision::bf16;
  const auto in = make_inputs(s, 800);
  auto stored = [](const Vec& x) {
    std::vector<bf16> b(x.size());
    for (size_t i = 0; i < x.size(); ++i) b[i] = fp32_to_bf16(static_cast<float>(x[i]));
    return b;
  };
  auto values = [](const std::vector<bf16>& b) {
    std::vector<float> f(b.size());
    for (size_t i = 0; i < b.size(); ++i) f[i] = bf16_to_fp32(b[i]);
    return f;
  };
  const std::vector<bf16> q16 = stored(in.q), k16 = stored(in.k), v16 = stored(in.v);
  const std::vector<float> q = values(q16), k = values(k16), v = values(v16);
  const std::vector<float> st(in.state.begin(), in.state.end());
  const std::vector<float> dO = test::randn<float>(q.size(), 801);
  const std::vector<float> dS = test::randn<float>(st.size(), 802);
  const auto g = linear_attention_gammas(s.H, true);
  const size_t n = q.size(), ns = st.size();
  std::vector<float> o(n), so(ns), dq(n), dk(n), dv(n), ds(ns);
  std::vector<float> o2(n), so2(ns), dq2(n), dk2(n), dv2(n), ds2(ns);
  linear_attention_forward(s, q.data(), k.data(), v.data(), g.data(), o.data(), st.data(),
                           so.data());
  linear_attention_forward(s, q16.data(), k16.data(), v16.data(), g.data(), o2.data(), st.data(),
                           so2.data());
  linear_attention_backward(s, q.data(), k.data(), v.data(), g.data(), dO.data(), dq.data(),
                            dk.data(), dv.data(), st.data(), dS.data(), ds.data());
  linear_attention_backward(s, q16.data(), k16.data(), v16.data(), g.data(), dO.data(), dq2.data(),
                            dk2.data(), dv2.data(), st.data(), dS.data(), ds2.data());
  EXPECT_EQ(o2, o);
  EXPECT_EQ(so2, so);
  EXPECT_EQ(dq2, dq);
  EXPECT_EQ(dk2, dk);
  EXPECT_EQ(dv2, dv);
  EXPECT_EQ(ds2, ds);
  LinearAttentionShape s32 = s;  // the bf16 storage is for the bf16 precision only
  s32.precision = Precision::fp32;
  EXPECT_THROW(linear_attention_forward(s32, q16.data(), k16.data(), v16.data(), g.data(),
                                        o2.data(), nullptr, nullptr),
               StrataError);
}

template <class T>
void check_causality() {
  // Chunks of 4 over T = 12: p = 4 starts a chunk, 7 ends one, 5 is inside one.
  const LinearAttentionShape s{2, 12, 2, 4, 4};
  const auto in0 = make_inputs(s, 500);
  const std::vector<T> q0(in0.q.begin(), in0.q.end()), k0(in0.k.begin(), in0.k.end()),
      v0(in0.v.begin(), in0.v.end());
  const Vec gd = gammas(s.H, 1);
  const std::vector<T> g(gd.begin(), gd.end());
  const int64_t row = s.H * s.dh;
  std::vector<T> o0(q0.size());
  linear_attention_forward(s, q0.data(), k0.data(), v0.data(), g.data(), o0.data(), nullptr,
                           nullptr);
  for (int64_t p : {4, 7, 5})
    for (int which = 0; which < 3; ++which) {
      SCOPED_TRACE(::testing::Message() << "p=" << p << " tensor="
                                        << "qkv"[which]);
      auto q = q0, k = k0, v = v0;
      auto& x = which == 0 ? q : which == 1 ? k : v;
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t c = 0; c < row; ++c) x[(b * s.T + p) * row + c] += T(0.5);
      std::vector<T> o(q.size());
      linear_attention_forward(s, q.data(), k.data(), v.data(), g.data(), o.data(), nullptr,
                               nullptr);
      double later = 0;
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.T; ++t)
          for (int64_t c = 0; c < row; ++c) {
            const size_t i = (b * s.T + t) * row + c;
            if (t < p)
              ASSERT_EQ(o[i], o0[i]) << "output at t=" << t << " saw position " << p;
            else
              later = std::max(later, std::abs(double(o[i]) - double(o0[i])));
          }
      EXPECT_GT(later, 1e-3);
    }
}

TEST(LinearAttention, CausalDouble) { check_causality<double>(); }
TEST(LinearAttention, CausalFloat) { check_causality<float>(); }

}  // namespace
}  // namespace strata
