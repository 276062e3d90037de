// Sequence-parallel attention (parallel/sequence.h) under mpirun -np 2, 3 and 4. Every rank builds
// the WHOLE sequence's inputs from the same seed, runs the single-rank core op on it as the
// reference and checks its own chunk of the sp op's outputs and gradients against the
// reference's rows. Also: causality across rank boundaries (exact), the communication volume per
// layer (LASP-2's does not grow with the chunk length, LASP-2H's does), and sp = 1 being the
// plain core op bit for bit (on split size-1 MPI communicators and on SelfComm).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/linear_attention.h"
#include "core/memory.h"
#include "core/softmax_attention.h"
#include "parallel/comm.h"
#include "parallel/self_comm.h"
#include "parallel/sequence.h"
#include "tests/mpi/mpi_test_env.h"

namespace strata {
namespace {

using Vec = std::vector<float>;

// A fresh duplicate of the world per test: its own counters, its own message space.
std::unique_ptr<Comm> world() { return test_mpi_env().world("sp"); }

// Same numbers on every rank for the same seed.
Vec random_vec(int64_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Vec x(static_cast<size_t>(n));
  for (auto& e : x) e = scale * u(gen);
  return x;
}

// Rows [t0, t0+len) of every sequence of x: [B, T, row] -> [B, len, row].
Vec rows(const Vec& x, int64_t B, int64_t T, int64_t row, int64_t t0, int64_t len) {
  Vec y(static_cast<size_t>(B * len * row));
  for (int64_t b = 0; b < B; ++b)
    std::copy(x.begin() + (b * T + t0) * row, x.begin() + (b * T + t0 + len) * row,
              y.begin() + b * len * row);
  return y;
}

// max |got - want| / max |whole|: this rank's rows against the reference's, relative to the
// reference's scale over the whole sequence (a slice can be exactly zero, e.g. dq of the one
// query that sees a single key, where its own maximum would only measure roundoff).
double rel_err(const Vec& got, const Vec& want, const Vec& whole) {
  double d = 0, m = 0;
  for (size_t i = 0; i < want.size(); ++i)
    d = std::max(d, std::abs(double(got[i]) - double(want[i])));
  for (float x : whole) m = std::max(m, std::abs(double(x)));
  return m > 0 ? d / m : d;
}

int64_t count_diff(const Vec& a, const Vec& b) {
  int64_t c = 0;
  for (size_t i = 0; i < a.size(); ++i) c += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return c;
}

// fp32 against fp32 with different chunkings and summation orders: measured errors are below
// 1e-6 at -np 2..4; 2e-5 still catches a dropped decay power (0.7^13 ~ 1e-2).
constexpr double kTol = 2e-5;

// ----------------------------------------------------------------------------------------------
// LASP-2
// ----------------------------------------------------------------------------------------------

// strong: 0.7, 0.6, ... so powers of γ matter; steep: 0.3, 0.5 so γ^n underflows (n = 96:
// 0.3^96 ~ 1e-50) and the sp op's weights below 1e-30 are flushed to zero.
enum class Decay { retnet, none, strong, steep };

struct LinCase {
  int64_t B, H, dh, n, chunk;
  Decay decay;
};

std::string name(const LinCase& c) {
  const char* names[] = {"retnet", "none", "strong", "steep"};
  const char* d = names[static_cast<int>(c.decay)];
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) + " dh=" + std::to_string(c.dh) +
         " n=" + std::to_string(c.n) + " chunk=" + std::to_string(c.chunk) + " decay=" + d;
}

Vec gammas(const LinCase& c) {
  if (c.decay == Decay::strong) {  // 0.7, 0.6, 0.5, ...: γ^(n·k) spans many orders
    Vec g(static_cast<size_t>(c.H));
    for (int64_t h = 0; h < c.H; ++h) g[h] = 0.7f - 0.1f * float(h % 5);
    return g;
  }
  if (c.decay == Decay::steep) {
    Vec g(static_cast<size_t>(c.H));
    for (int64_t h = 0; h < c.H; ++h) g[h] = h % 2 == 0 ? 0.3f : 0.5f;
    return g;
  }
  return linear_attention_gammas(c.H, c.decay == Decay::retnet);
}

// The whole sequence's inputs of T tokens. k carries MODEL.md's 1/sqrt(dh).
struct LinData {
  Vec q, k, v, dout;
};
LinData lin_data(const LinCase& c, int64_t T, uint32_t seed) {
  const int64_t N = c.B * T * c.H * c.dh;
  return {random_vec(N, seed), random_vec(N, seed + 1, 1.f / std::sqrt(float(c.dh))),
          random_vec(N, seed + 2), random_vec(N, seed + 3)};
}

struct LinOut {
  Vec o, prefix, dq, dk, dv;
};

std::vector<bf16> stored_bf16(const Vec& x) {
  std::vector<bf16> b(x.size());
  for (size_t i = 0; i < x.size(); ++i) b[i] = fp32_to_bf16(x[i]);
  return b;
}

// This rank's rows of the whole sequence through sequence:: LASP-2. p bf16: the kernel's
// products in bf16; stored_bf16: q, k, v handed over stored in bf16 (rounded here).
LinOut run_lasp2(Comm& sp, const LinCase& c, const LinData& full, const Vec& g,
                 Precision p = Precision::fp32, bool stored = false) {
  const int64_t T = sp.size() * c.n, t0 = sp.rank() * c.n, row = c.H * c.dh;
  const LinearAttentionShape s{c.B, c.n, c.H, c.dh, c.chunk, p};
  const Vec q = rows(full.q, c.B, T, row, t0, c.n), k = rows(full.k, c.B, T, row, t0, c.n);
  const Vec v = rows(full.v, c.B, T, row, t0, c.n), dout = rows(full.dout, c.B, T, row, t0, c.n);
  LinOut r;
  r.o.resize(q.size());
  r.prefix.resize(static_cast<size_t>(c.B * c.H * c.dh * c.dh));
  r.dq.resize(q.size());
  r.dk.resize(q.size());
  r.dv.resize(q.size());
  if (stored) {
    const std::vector<bf16> q16 = stored_bf16(q), k16 = stored_bf16(k), v16 = stored_bf16(v);
    sequence::linear_attention_forward(sp, s, q16.data(), k16.data(), v16.data(), g.data(),
                                       r.o.data(), r.prefix.data());
    sequence::linear_attention_backward(sp, s, q16.data(), k16.data(), v16.data(), g.data(),
                                        r.prefix.data(), dout.data(), r.dq.data(), r.dk.data(),
                                        r.dv.data());
    return r;
  }
  sequence::linear_attention_forward(sp, s, q.data(), k.data(), v.data(), g.data(), r.o.data(),
                                     r.prefix.data());
  sequence::linear_attention_backward(sp, s, q.data(), k.data(), v.data(), g.data(),
                                      r.prefix.data(), dout.data(), r.dq.data(), r.dk.data(),
                                      r.dv.data());
  return r;
}

// The core op on T tokens (one rank's view of the whole sequence).
LinOut run_core_linear(const LinCase& c, int64_t T, const LinData& d, const Vec& g) {
  const LinearAttentionShape s{c.B, T, c.H, c.dh, c.chunk};
  LinOut r;
  r.o.resize(d.q.size());
  r.dq.resize(d.q.size());
  r.dk.resize(d.q.size());
  r.dv.resize(d.q.size());
  linear_attention_forward(s, d.q.data(), d.k.data(), d.v.data(), g.data(), r.o.data(), nullptr,
                           nullptr);
  linear_attention_backward(s, d.q.data(), d.k.data(), d.v.data(), g.data(), d.dout.data(),
                            r.dq.data(), r.dk.data(), r.dv.data(), nullptr, nullptr, nullptr);
  return r;
}

void check_linear_against_reference(Comm& sp, const LinCase& c, uint32_t seed) {
  SCOPED_TRACE(name(c) + " sp=" + std::to_string(sp.size()) + " rank=" + std::to_string(sp.rank()));
  const int64_t R = sp.size(), r = sp.rank(), T = R * c.n, t0 = r * c.n, row = c.H * c.dh;
  const Vec g = gammas(c);
  const LinData full = lin_data(c, T, seed);
  const LinOut got = run_lasp2(sp, c, full, g);
  const LinOut ref = run_core_linear(c, T, full, g);

  auto mine = [&](const Vec& x) { return rows(x, c.B, T, row, t0, c.n); };
  EXPECT_LE(rel_err(got.o, mine(ref.o), ref.o), kTol);
  EXPECT_LE(rel_err(got.dq, mine(ref.dq), ref.dq), kTol);
  EXPECT_LE(rel_err(got.dk, mine(ref.dk), ref.dk), kTol);
  EXPECT_LE(rel_err(got.dv, mine(ref.dv), ref.dv), kTol);

  // The prefix is the recurrence's state after global position r*n - 1.
  Vec want(got.prefix.size(), 0.f);
  if (r > 0) {
    const LinearAttentionShape s{c.B, t0, c.H, c.dh, c.chunk};
    const Vec q = rows(full.q, c.B, T, row, 0, t0), k = rows(full.k, c.B, T, row, 0, t0);
    const Vec v = rows(full.v, c.B, T, row, 0, t0);
    Vec o(q.size());
    linear_attention_reference(s, q.data(), k.data(), v.data(), g.data(), o.data(), nullptr,
                               want.data());
    EXPECT_LE(rel_err(got.prefix, want, want), kTol);
  } else {
    EXPECT_EQ(count_diff(got.prefix, want), 0) << "rank 0's prefix must be exactly zero";
  }
}

const LinCase kLinCases[] = {
    {2, 3, 8, 13, 4, Decay::retnet},  {2, 3, 8, 13, 4, Decay::none},
    {2, 3, 8, 13, 4, Decay::strong},  {1, 2, 16, 1, 4, Decay::retnet},
    {2, 2, 8, 1, 4, Decay::none},     {2, 3, 8, 1, 1, Decay::strong},
    {1, 2, 16, 32, 8, Decay::strong}, {1, 4, 8, 5, 64, Decay::retnet},
    {3, 2, 4, 24, 7, Decay::none},    {1, 2, 8, 96, 16, Decay::steep},
};

TEST(Lasp2, MatchesSingleRankOp) {
  auto sp = world();
  uint32_t seed = 100;
  for (const LinCase& c : kLinCases) check_linear_against_reference(*sp, c, seed += 10);
}

// q, k, v handed over in bf16 (the bf16 precision's block) give what the float inputs of the same
// values give, bit for bit, on every rank: the cross-rank products read exact fp32 copies.
TEST(Lasp2, Bf16StoredInputsAreTheFloatOpOnTheirValues) {
  auto sp = world();
  uint32_t seed = 900;
  for (const LinCase& c : kLinCases) {
    SCOPED_TRACE(name(c));
    LinData d = lin_data(c, sp->size() * c.n, seed += 10);
    for (Vec* x : {&d.q, &d.k, &d.v})
      for (float& e : *x) e = bf16_to_fp32(fp32_to_bf16(e));
    const Vec g = gammas(c);
    const LinOut want = run_lasp2(*sp, c, d, g, Precision::bf16);
    const LinOut got = run_lasp2(*sp, c, d, g, Precision::bf16, /*stored=*/true);
    EXPECT_EQ(count_diff(got.o, want.o), 0);
    EXPECT_EQ(count_diff(got.prefix, want.prefix), 0);
    EXPECT_EQ(count_diff(got.dq, want.dq), 0);
    EXPECT_EQ(count_diff(got.dk, want.dk), 0);
    EXPECT_EQ(count_diff(got.dv, want.dv), 0);
  }
}

// On a sub-communicator (sp groups of world ranks of the same parity, so -np 3 gives groups of
// 2 and 1): each group runs its own sequence and must not see the other's.
TEST(Lasp2, MatchesSingleRankOpOnSplitCommunicator) {
  auto w = world();
  auto sp = w->split(w->rank() % 2, w->rank(), "sp");
  for (const LinCase& c : {kLinCases[0], kLinCases[2]})
    check_linear_against_reference(*sp, c, 500 + 7 * uint32_t(w->rank() % 2));
}

// Perturbing k and v at global position p leaves every output before p unchanged on every rank
// (bit for bit) and changes some output at or after p.
TEST(Lasp2, CausalAcrossRanks) {
  auto sp = world();
  const int64_t R = sp->size(), r = sp->rank();
  for (Decay decay : {Decay::retnet, Decay::none}) {
    const LinCase c{2, 2, 8, 6, 4, decay};
    const int64_t T = R * c.n, row = c.H * c.dh;
    const Vec g = gammas(c);
    const LinData base = lin_data(c, T, 77);
    const LinOut o0 = run_lasp2(*sp, c, base, g);
    for (int64_t p : {c.n - 1, c.n, T / 2 + 1, T - 1}) {
      SCOPED_TRACE("p=" + std::to_string(p) + " rank=" + std::to_string(r));
      LinData pert = base;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t i = 0; i < row; ++i) {
          pert.k[(b * T + p) * row + i] += 0.5f;
          pert.v[(b * T + p) * row + i] -= 0.25f;
        }
      const LinOut o1 = run_lasp2(*sp, c, pert, g);
      int64_t before = 0, after = 0;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t j = 0; j < c.n; ++j) {
          const int64_t ofs = (b * c.n + j) * row;
          const int64_t d = count_diff(Vec(o0.o.begin() + ofs, o0.o.begin() + ofs + row),
                                       Vec(o1.o.begin() + ofs, o1.o.begin() + ofs + row));
          (r * c.n + j < p ? before : after) += d;
        }
      EXPECT_EQ(before, 0);
      sp->all_reduce_sum_int64(&after, 1);
      EXPECT_GT(after, 0);
    }
  }
}

// One all-gather forward and one backward, of B·H·dh·dh fp32 per rank, whatever the chunk.
TEST(Lasp2, CommunicationIndependentOfLength) {
  auto sp = world();
  const int64_t R = sp->size();
  int64_t bytes[2] = {0, 0};
  int i = 0;
  for (int64_t n : {8, 64}) {
    const LinCase c{2, 3, 8, n, 16, Decay::retnet};
    const Vec g = gammas(c);
    const LinData full = lin_data(c, R * n, 9);
    sp->reset_stats();
    auto& mem = MemoryTracker::instance();
    const int64_t comm = static_cast<int>(MemCategory::comm), base = mem.snapshot().current[comm];
    mem.reset_peaks();
    run_lasp2(*sp, c, full, g);
    // The gathered states are comm memory (what strata plan predicts): every rank's, in place.
    EXPECT_EQ(mem.snapshot().peak[comm] - base, R > 1 ? R * c.B * c.H * c.dh * c.dh * 4 : 0);
    const CommStats& st = sp->stats();
    EXPECT_EQ(st[CommOp::all_gather].calls, 2) << "n=" << n;
    EXPECT_EQ(st[CommOp::all_gather].bytes, 2 * c.B * c.H * c.dh * c.dh * 4 * R) << "n=" << n;
    EXPECT_EQ(st.total_calls(), 2) << "n=" << n << ": " << format_comm_stats(st);
    bytes[i++] = st.total_bytes();
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}

// ----------------------------------------------------------------------------------------------
// LASP-2H
// ----------------------------------------------------------------------------------------------

struct SmCase {
  int64_t B, H, Hkv, dh, n;
};

std::string name(const SmCase& c) {
  return "B=" + std::to_string(c.B) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + " dh=" + std::to_string(c.dh) +
         " n=" + std::to_string(c.n);
}

struct SmData {
  Vec q, k, v, dout;  // q, dout: [B, T, H, dh]; k, v: [B, T, Hkv, dh]
};
SmData sm_data(const SmCase& c, int64_t T, uint32_t seed) {
  const int64_t Nq = c.B * T * c.H * c.dh, Nk = c.B * T * c.Hkv * c.dh;
  return {random_vec(Nq, seed, 1.5f), random_vec(Nk, seed + 1, 1.5f), random_vec(Nk, seed + 2),
          random_vec(Nq, seed + 3)};
}

struct SmOut {
  Vec k_all, v_all, o, lse, dq, dk, dv;
};

SmOut run_lasp2h(Comm& sp, const SmCase& c, const SmData& full) {
  const int64_t R = sp.size(), T = R * c.n, t0 = sp.rank() * c.n;
  const int64_t rq = c.H * c.dh, rk = c.Hkv * c.dh;
  const Vec q = rows(full.q, c.B, T, rq, t0, c.n), dout = rows(full.dout, c.B, T, rq, t0, c.n);
  const Vec k = rows(full.k, c.B, T, rk, t0, c.n), v = rows(full.v, c.B, T, rk, t0, c.n);
  SmOut r;
  r.k_all.resize(full.k.size());
  r.v_all.resize(full.v.size());
  r.o.resize(q.size());
  r.lse.resize(static_cast<size_t>(c.B * c.H * c.n));
  r.dq.resize(q.size());
  r.dk.resize(k.size());
  r.dv.resize(k.size());
  sequence::softmax_attention_forward(sp, c.B, c.n, c.H, c.Hkv, c.dh, q.data(), k.data(), v.data(),
                                      r.k_all.data(), r.v_all.data(), r.o.data(), r.lse.data());
  sequence::softmax_attention_backward(sp, c.B, c.n, c.H, c.Hkv, c.dh, q.data(), r.k_all.data(),
                                       r.v_all.data(), r.o.data(), r.lse.data(), dout.data(),
                                       r.dq.data(), r.dk.data(), r.dv.data());
  return r;
}

SmOut run_core_softmax(const SmCase& c, int64_t T, const SmData& d) {
  const SoftmaxAttentionShape s{c.B, T, T, c.H, c.Hkv, c.dh, 0, 0};
  SmOut r;
  r.o.resize(d.q.size());
  r.lse.resize(static_cast<size_t>(c.B * c.H * T));
  r.dq.resize(d.q.size());
  r.dk.resize(d.k.size());
  r.dv.resize(d.k.size());
  softmax_attention_forward(s, d.q.data(), d.k.data(), d.v.data(), r.o.data(), r.lse.data());
  softmax_attention_backward(s, d.q.data(), d.k.data(), d.v.data(), r.o.data(), r.lse.data(),
                             d.dout.data(), r.dq.data(), r.dk.data(), r.dv.data());
  return r;
}

void check_softmax_against_reference(Comm& sp, const SmCase& c, uint32_t seed) {
  SCOPED_TRACE(name(c) + " sp=" + std::to_string(sp.size()) + " rank=" + std::to_string(sp.rank()));
  const int64_t R = sp.size(), T = R * c.n, t0 = sp.rank() * c.n;
  const int64_t rq = c.H * c.dh, rk = c.Hkv * c.dh;
  const SmData full = sm_data(c, T, seed);
  const SmOut got = run_lasp2h(sp, c, full);
  const SmOut ref = run_core_softmax(c, T, full);

  EXPECT_EQ(count_diff(got.k_all, full.k), 0);
  EXPECT_EQ(count_diff(got.v_all, full.v), 0);
  EXPECT_LE(rel_err(got.o, rows(ref.o, c.B, T, rq, t0, c.n), ref.o), kTol);
  // lse [B, H, T]: one "row" per (b, h) of T entries.
  EXPECT_LE(rel_err(got.lse, rows(ref.lse, c.B * c.H, T, 1, t0, c.n), ref.lse), kTol);
  EXPECT_LE(rel_err(got.dq, rows(ref.dq, c.B, T, rq, t0, c.n), ref.dq), kTol);
  EXPECT_LE(rel_err(got.dk, rows(ref.dk, c.B, T, rk, t0, c.n), ref.dk), kTol);
  EXPECT_LE(rel_err(got.dv, rows(ref.dv, c.B, T, rk, t0, c.n), ref.dv), kTol);
}

const SmCase kSmCases[] = {
    {2, 4, 2, 8, 13}, {1, 2, 1, 16, 1}, {2, 3, 3, 8, 1}, {1, 2, 1, 16, 70}, {3, 4, 1, 4, 9},
};

TEST(Lasp2H, MatchesSingleRankOp) {
  auto sp = world();
  uint32_t seed = 300;
  for (const SmCase& c : kSmCases) check_softmax_against_reference(*sp, c, seed += 10);
}

TEST(Lasp2H, MatchesSingleRankOpOnSplitCommunicator) {
  auto w = world();
  auto sp = w->split(w->rank() % 2, w->rank(), "sp");
  check_softmax_against_reference(*sp, kSmCases[0], 600 + 7 * uint32_t(w->rank() % 2));
}

TEST(Lasp2H, CausalAcrossRanks) {
  auto sp = world();
  const int64_t R = sp->size(), r = sp->rank();
  const SmCase c{2, 4, 2, 8, 6};
  const int64_t T = R * c.n, rq = c.H * c.dh, rk = c.Hkv * c.dh;
  const SmData base = sm_data(c, T, 88);
  const SmOut o0 = run_lasp2h(*sp, c, base);
  for (int64_t p : {c.n - 1, c.n, T / 2 + 1, T - 1}) {
    SCOPED_TRACE("p=" + std::to_string(p) + " rank=" + std::to_string(r));
    SmData pert = base;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t i = 0; i < rk; ++i) {
        pert.k[(b * T + p) * rk + i] += 0.5f;
        pert.v[(b * T + p) * rk + i] -= 0.25f;
      }
    const SmOut o1 = run_lasp2h(*sp, c, pert);
    int64_t before = 0, after = 0;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t j = 0; j < c.n; ++j) {
        const int64_t ofs = (b * c.n + j) * rq;
        const int64_t d = count_diff(Vec(o0.o.begin() + ofs, o0.o.begin() + ofs + rq),
                                     Vec(o1.o.begin() + ofs, o1.o.begin() + ofs + rq));
        (r * c.n + j < p ? before : after) += d;
      }
    EXPECT_EQ(before, 0);
    sp->all_reduce_sum_int64(&after, 1);
    EXPECT_GT(after, 0);
  }
}

// One all-gather of K and V forward, one reduce-scatter of dK and dV backward: bytes grow with n.
TEST(Lasp2H, CommunicationGrowsWithLength) {
  auto sp = world();
  const int64_t R = sp->size();
  int64_t bytes[2] = {0, 0};
  int i = 0;
  for (int64_t n : {8, 64}) {
    const SmCase c{2, 4, 2, 8, n};
    const SmData full = sm_data(c, R * n, 5);
    sp->reset_stats();
    auto& mem = MemoryTracker::instance();
    const int64_t comm = static_cast<int>(MemCategory::comm), base = mem.snapshot().current[comm];
    mem.reset_peaks();
    run_lasp2h(*sp, c, full);
    const CommStats& st = sp->stats();
    const int64_t kv = 2 * c.B * n * c.Hkv * c.dh * 4 * R;  // K and V of the whole sequence
    // comm memory: the packed blocks of the whole sequence and, with them, this rank's share.
    EXPECT_EQ(mem.snapshot().peak[comm] - base, kv + kv / R);
    EXPECT_EQ(st[CommOp::all_gather].calls, 1);
    EXPECT_EQ(st[CommOp::all_gather].bytes, kv);
    EXPECT_EQ(st[CommOp::reduce_scatter].calls, 1);
    EXPECT_EQ(st[CommOp::reduce_scatter].bytes, kv);
    EXPECT_EQ(st.total_calls(), 2) << format_comm_stats(st);
    bytes[i++] = st.total_bytes();
  }
  EXPECT_EQ(bytes[1], 8 * bytes[0]);
}

// ----------------------------------------------------------------------------------------------
// sp = 1: exactly the plain op
// ----------------------------------------------------------------------------------------------

void check_sp1_bitwise(Comm& one) {
  ASSERT_EQ(one.size(), 1);  // before any collective: every rank fails alike
  for (const LinCase& c : kLinCases) {
    SCOPED_TRACE(name(c) + " " + one.describe());
    const Vec g = gammas(c);
    const LinData d = lin_data(c, c.n, 42);
    const LinOut got = run_lasp2(one, c, d, g);
    const LinOut ref = run_core_linear(c, c.n, d, g);
    EXPECT_EQ(count_diff(got.o, ref.o), 0);
    EXPECT_EQ(count_diff(got.dq, ref.dq), 0);
    EXPECT_EQ(count_diff(got.dk, ref.dk), 0);
    EXPECT_EQ(count_diff(got.dv, ref.dv), 0);
    EXPECT_EQ(count_diff(got.prefix, Vec(got.prefix.size(), 0.f)), 0);
  }
  for (const SmCase& c : kSmCases) {
    SCOPED_TRACE(name(c) + " " + one.describe());
    const SmData d = sm_data(c, c.n, 43);
    const SmOut got = run_lasp2h(one, c, d);
    const SmOut ref = run_core_softmax(c, c.n, d);
    EXPECT_EQ(count_diff(got.k_all, d.k), 0);
    EXPECT_EQ(count_diff(got.v_all, d.v), 0);
    EXPECT_EQ(count_diff(got.o, ref.o), 0);
    EXPECT_EQ(count_diff(got.lse, ref.lse), 0);
    EXPECT_EQ(count_diff(got.dq, ref.dq), 0);
    EXPECT_EQ(count_diff(got.dk, ref.dk), 0);
    EXPECT_EQ(count_diff(got.dv, ref.dv), 0);
  }
}

// Alone on the sequence there is nothing to gather or scatter: LASP-2H calls the kernel on its
// own buffers, so it neither moves a byte nor holds a comm buffer (the packed K/V blocks and the
// whole-sequence dK, dV were copies of what the kernel already had, on the main thread).
void check_sp1_moves_nothing(Comm& one) {
  ASSERT_EQ(one.size(), 1);
  const SmCase& c = kSmCases[0];
  const SmData d = sm_data(c, c.n, 44);
  one.reset_stats();
  MemoryTracker& mem = MemoryTracker::instance();
  const int64_t comm_before = mem.snapshot().current[static_cast<int>(MemCategory::comm)];
  mem.reset_peaks();
  run_lasp2h(one, c, d);
  EXPECT_EQ(one.stats().total_bytes(), 0);
  EXPECT_EQ(mem.snapshot().peak[static_cast<int>(MemCategory::comm)], comm_before);
}

TEST(SequenceSp1, SplitMpiCommunicatorIsThePlainOp) {
  auto w = world();
  auto one = w->split(w->rank(), 0, "sp");
  check_sp1_bitwise(*one);
  check_sp1_moves_nothing(*one);
}

TEST(SequenceSp1, SelfCommIsThePlainOp) {
  SelfComm self("sp");
  check_sp1_bitwise(self);
  check_sp1_moves_nothing(self);
}

}  // namespace
}  // namespace strata
