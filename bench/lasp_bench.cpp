// Sequence parallelism for linear attention: three ways to give each rank the state entering its
// chunk, timed forward+backward with the bytes each moves per rank.
//
//   mpirun --allow-run-as-root --oversubscribe -np 4 -x OMP_NUM_THREADS=1
//       build/bench/lasp_bench [--lens 2048,8192,32768,65536] [--heads 8] [--dh 64]
//       [--chunk 64] [--batch 1] [--iters 2]
//
//  lasp2    parallel/sequence.h: one all-gather of the per-rank chunk states [B,H,dh,dh]
//           forward and one of the prefix gradients backward, each overlapped with the local
//           chunked op. Volume independent of the sequence length.
//  ring     LASP-1 style: the states travel rank to rank with point-to-point messages (rank r
//           waits for the prefix from r-1, adds its own chunk state, sends it to r+1; the
//           backward passes the suffix gradient from r+1 down to r-1). Same bytes per link as
//           one state, but a chain of sp-1 dependent hops in each direction.
//  kv-gath  all-gather K and V (as LASP-2H does for softmax layers): each rank recomputes the
//           prefix state from the earlier ranks' raw K, V and runs the plain op from it; the
//           backward reduce-scatters full-length dK, dV. Volume grows with the sequence.
//
// Timing: the best of --iters timed iterations after one warm-up, each between barriers, so a
// row is the slowest rank's fwd+bwd. Bytes: the warm-up iteration's, counted by the sp
// communicator in the comm_stats.h convention (an all-gather of Psi counts Psi on every rank, a
// send/recv its size on the sender/receiver), the maximum over ranks. "max rel diff" compares the
// outputs and input gradients of ring and kv-gath with lasp2's (max over ranks and tensors of
// max|x - x_lasp2| / max|x_lasp2|): all three compute the same function.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_args.h"
#include "core/gemm.h"
#include "core/linear_attention.h"
#include "core/rng.h"
#include "parallel/comm.h"
#include "parallel/sequence.h"
#include "parallel/world.h"

using namespace strata;

namespace {

using Vec = std::vector<float>;

// ---------------------------------------------------------------------------------------------
// Math shared by the two baselines: per (batch, head) dh×dh products with row weights
// λ_i = γ^(i+1) (reading the entering state) and μ_j = γ^(n-1-j) (surviving to the chunk's end).
// ---------------------------------------------------------------------------------------------

// As parallel/sequence.cpp: weights below 1e-30 are flushed to 0 (subnormal weights would put
// the weighted GEMMs on the slow subnormal path without changing any fp32 result).
float decay_power(float gamma, int64_t e) {
  const double w = std::pow(static_cast<double>(gamma), static_cast<double>(e));
  return w < 1e-30 ? 0.f : static_cast<float>(w);
}

// Calls f(b, h, pw, X): pw = γ_h^e for e = 0..n, X an [n, dh] scratch.
template <class F>
void for_each_head(const LinearAttentionShape& s, const float* gamma, F f) {
  Vec pw(static_cast<size_t>(s.T + 1)), X(static_cast<size_t>(s.T * s.dh));
  for (int64_t h = 0; h < s.H; ++h) {
    for (int64_t e = 0; e <= s.T; ++e) pw[e] = decay_power(gamma[h], e);
    for (int64_t b = 0; b < s.B; ++b) f(b, h, pw.data(), X.data());
  }
}

// X[n, dh] = diag(w) Y, Y with row stride ld.
template <class W>
void scaled_rows(const float* Y, int64_t n, int64_t dh, int64_t ld, W w, float* X) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < dh; ++c) X[i * dh + c] = w(i) * Y[i * ld + c];
}

// S = beta_h S + Kᵀ diag(μ) V per (b, h), beta_h = γ_h^n when `decay`, else 0. S: [B,H,dh,dh]
void accumulate_state(const LinearAttentionShape& s, const float* gamma, const float* k,
                      const float* v, bool decay, float* S) {
  const int64_t n = s.T, dh = s.dh, ld = s.H * dh;
  for_each_head(s, gamma, [&](int64_t b, int64_t h, const float* pw, float* X) {
    const int64_t ofs = (b * n * s.H + h) * dh;
    scaled_rows(
        v + ofs, n, dh, ld, [&](int64_t j) { return pw[n - 1 - j]; }, X);
    sgemm(true, false, dh, dh, n, 1.f, k + ofs, ld, X, dh, decay ? pw[n] : 0.f,
          S + (b * s.H + h) * dh * dh, dh);
  });
}

// dP = Qᵀ diag(λ) dO per (b, h): the gradient w.r.t. the state entering the chunk.
void entering_state_grad(const LinearAttentionShape& s, const float* gamma, const float* q,
                         const float* dout, float* dP) {
  const int64_t n = s.T, dh = s.dh, ld = s.H * dh;
  for_each_head(s, gamma, [&](int64_t b, int64_t h, const float* pw, float* X) {
    const int64_t ofs = (b * n * s.H + h) * dh;
    scaled_rows(
        dout + ofs, n, dh, ld, [&](int64_t i) { return pw[i + 1]; }, X);
    sgemm(true, false, dh, dh, n, 1.f, q + ofs, ld, X, dh, 0.f, dP + (b * s.H + h) * dh * dh, dh);
  });
}

// out = γ^n S + M per (b, h): the state after a chunk that started from S and built M.
void chain_state(const LinearAttentionShape& s, const float* gamma, const float* S, const float* M,
                 float* out) {
  const int64_t dd = s.dh * s.dh;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      const float c = decay_power(gamma[h], s.T);
      for (int64_t i = 0; i < dd; ++i) {
        const int64_t x = (b * s.H + h) * dd + i;
        out[x] = c * S[x] + M[x];
      }
    }
}

// o += diag(λ) Q P and dq += diag(λ) dO Pᵀ (the entering state P's terms); either may be null.
void add_prefix_terms(const LinearAttentionShape& s, const float* gamma, const float* q,
                      const float* dout, const float* P, float* o, float* dq) {
  const int64_t n = s.T, dh = s.dh, ld = s.H * dh;
  for_each_head(s, gamma, [&](int64_t b, int64_t h, const float* pw, float* X) {
    const int64_t ofs = (b * n * s.H + h) * dh;
    const float* Ph = P + (b * s.H + h) * dh * dh;
    auto lambda = [&](int64_t i) { return pw[i + 1]; };
    if (o) {
      scaled_rows(q + ofs, n, dh, ld, lambda, X);
      sgemm(false, false, n, dh, dh, 1.f, X, dh, Ph, dh, 1.f, o + ofs, ld);
    }
    if (dq) {
      scaled_rows(dout + ofs, n, dh, ld, lambda, X);
      sgemm(false, true, n, dh, dh, 1.f, X, dh, Ph, dh, 1.f, dq + ofs, ld);
    }
  });
}

// dk (+)= c·diag(μ) V Dᵀ, dv (+)= c·diag(μ) K D per (b, h), c = γ_h^(extra): the chunk's keys
// and values reach later outputs through its state; D is the gradient w.r.t. the state `extra`
// tokens after the chunk's end. dk, dv have row stride ldo.
void add_state_kv_terms(const LinearAttentionShape& s, const float* gamma, const float* k,
                        const float* v, const float* D, int64_t extra, bool accumulate, float* dk,
                        float* dv, int64_t ldo) {
  const int64_t n = s.T, dh = s.dh, ld = s.H * dh;
  for_each_head(s, gamma, [&](int64_t b, int64_t h, const float* pw, float* X) {
    const int64_t ofs = (b * n * s.H + h) * dh, oofs = (b * n * (ldo / dh) + h) * dh;
    const float c = decay_power(gamma[h], extra);
    const float* Dh = D + (b * s.H + h) * dh * dh;
    auto mu = [&](int64_t j) { return c * pw[n - 1 - j]; };
    const float beta = accumulate ? 1.f : 0.f;
    scaled_rows(v + ofs, n, dh, ld, mu, X);
    sgemm(false, true, n, dh, dh, 1.f, X, dh, Dh, dh, beta, dk + oofs, ldo);
    scaled_rows(k + ofs, n, dh, ld, mu, X);
    sgemm(false, false, n, dh, dh, 1.f, X, dh, Dh, dh, beta, dv + oofs, ldo);
  });
}

// ---------------------------------------------------------------------------------------------
// The three methods. Each: forward then backward of one layer on this rank's chunk.
// ---------------------------------------------------------------------------------------------

struct Layer {
  LinearAttentionShape s;  // s.T = n, this rank's chunk
  Vec gamma;               // [H]
  Vec q, k, v, dout;       // [B, n, H, dh]
  Vec o, dq, dk, dv;       // [B, n, H, dh] results
};

void run_lasp2(Comm& sp, Layer& L) {
  Vec prefix(static_cast<size_t>(L.s.B * L.s.H * L.s.dh * L.s.dh));  // [B, H, dh, dh]
  sequence::linear_attention_forward(sp, L.s, L.q.data(), L.k.data(), L.v.data(), L.gamma.data(),
                                     L.o.data(), prefix.data());
  sequence::linear_attention_backward(sp, L.s, L.q.data(), L.k.data(), L.v.data(), L.gamma.data(),
                                      prefix.data(), L.dout.data(), L.dq.data(), L.dk.data(),
                                      L.dv.data());
}

void run_ring(Comm& sp, Layer& L) {
  const LinearAttentionShape& s = L.s;
  const int r = sp.rank(), R = sp.size();
  const int64_t per = s.B * s.H * s.dh * s.dh;
  const float* g = L.gamma.data();
  Vec M(per), P(per, 0.f), next(per);  // [B, H, dh, dh] each
  constexpr int kFwdTag = 71, kBwdTag = 72;

  // Forward: the chunk's own state, then the chain; the send overlaps the local op.
  accumulate_state(s, g, L.k.data(), L.v.data(), false, M.data());
  if (r > 0) sp.recv(P.data(), per, r - 1, kFwdTag);
  CommHandle fwd_send;
  if (r + 1 < R) {
    chain_state(s, g, P.data(), M.data(), next.data());
    fwd_send = sp.isend(next.data(), per, r + 1, kFwdTag);
  }
  linear_attention_forward(s, L.q.data(), L.k.data(), L.v.data(), g, L.o.data(), nullptr, nullptr);
  if (r > 0) add_prefix_terms(s, g, L.q.data(), nullptr, P.data(), L.o.data(), nullptr);
  fwd_send.wait();

  // Backward: the gradient w.r.t. this chunk's entering state, then the chain downwards.
  Vec dP(per), D(per, 0.f), prev(per);  // [B, H, dh, dh] each
  entering_state_grad(s, g, L.q.data(), L.dout.data(), dP.data());
  if (r + 1 < R) sp.recv(D.data(), per, r + 1, kBwdTag);
  CommHandle bwd_send;
  if (r > 0) {
    chain_state(s, g, D.data(), dP.data(), prev.data());
    bwd_send = sp.isend(prev.data(), per, r - 1, kBwdTag);
  }
  linear_attention_backward(s, L.q.data(), L.k.data(), L.v.data(), g, L.dout.data(), L.dq.data(),
                            L.dk.data(), L.dv.data(), nullptr, nullptr, nullptr);
  if (r > 0) add_prefix_terms(s, g, nullptr, L.dout.data(), P.data(), nullptr, L.dq.data());
  if (r + 1 < R)
    add_state_kv_terms(s, g, L.k.data(), L.v.data(), D.data(), 0, true, L.dk.data(), L.dv.data(),
                       s.H * s.dh);
  bwd_send.wait();
}

void run_kv_gather(Comm& sp, Layer& L) {
  const LinearAttentionShape& s = L.s;
  const int r = sp.rank(), R = sp.size();
  const int64_t per = s.B * s.H * s.dh * s.dh, chunk = s.B * s.T * s.H * s.dh;
  const float* g = L.gamma.data();

  // Forward: every rank's K and V (one in-place all-gather of [sp][2][B, n, H, dh]).
  Vec kv(static_cast<size_t>(R * 2 * chunk));
  std::copy(L.k.begin(), L.k.end(), kv.begin() + r * 2 * chunk);
  std::copy(L.v.begin(), L.v.end(), kv.begin() + r * 2 * chunk + chunk);
  sp.all_gather(kv.data() + r * 2 * chunk, kv.data(), 2 * chunk);
  // The state after the earlier ranks' tokens, chunk by chunk from their raw K and V.
  Vec P(per, 0.f);  // [B, H, dh, dh]
  for (int q = 0; q < r; ++q)
    accumulate_state(s, g, kv.data() + q * 2 * chunk, kv.data() + q * 2 * chunk + chunk, q > 0,
                     P.data());
  linear_attention_forward(s, L.q.data(), L.k.data(), L.v.data(), g, L.o.data(), P.data(), nullptr);

  // Backward: the local op from P gives dL/dP; the earlier ranks' keys and values get their
  // share of it, the whole-sequence dK, dV are summed over ranks by a reduce-scatter.
  Vec dP(per);                                  // [B, H, dh, dh]
  Vec dkv(static_cast<size_t>(R * 2 * chunk));  // [sp][2][B, n, H, dh]
  float* mine = dkv.data() + r * 2 * chunk;
  linear_attention_backward(s, L.q.data(), L.k.data(), L.v.data(), g, L.dout.data(), L.dq.data(),
                            mine, mine + chunk, P.data(), nullptr, dP.data());
  for (int q = 0; q < r; ++q) {
    float* blk = dkv.data() + q * 2 * chunk;
    const float* kq = kv.data() + q * 2 * chunk;
    add_state_kv_terms(s, g, kq, kq + chunk, dP.data(), (r - 1 - q) * s.T, false, blk, blk + chunk,
                       s.H * s.dh);
  }
  Vec out(static_cast<size_t>(2 * chunk));  // [2][B, n, H, dh]
  sp.reduce_scatter_sum(dkv.data(), out.data(), 2 * chunk);
  std::copy(out.begin(), out.begin() + chunk, L.dk.begin());
  std::copy(out.begin() + chunk, out.end(), L.dv.begin());
}

// ---------------------------------------------------------------------------------------------

double max_rel_diff(const Vec& a, const Vec& ref) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::abs(double(a[i]) - double(ref[i])));
    m = std::max(m, std::abs(double(ref[i])));
  }
  return m > 0 ? d / m : d;
}

// "a,b,c" -> {a, b, c}: every item a whole number (an empty one too is an error naming the flag).
std::vector<int64_t> parse_list(const std::string& flag, const std::string& s) {
  std::vector<int64_t> out;
  size_t i = 0;
  for (;;) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    out.push_back(bench_number("lasp_bench", flag, s.substr(i, j - i)));
    if (j == s.size()) break;
    i = j + 1;
  }
  return out;
}

int run_bench(int argc, char** argv) {
  std::vector<int64_t> lens = {2048, 8192, 32768, 65536};
  int64_t heads = 8, dh = 64, chunk = 64, batch = 1, iters = 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "lasp_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&] { return bench_number("lasp_bench", a, next()); };
    if (a == "--lens")
      lens = parse_list(a, next());
    else if (a == "--heads")
      heads = number();
    else if (a == "--dh")
      dh = number();
    else if (a == "--chunk")
      chunk = number();
    else if (a == "--batch")
      batch = number();
    else if (a == "--iters")
      iters = std::max<int64_t>(1, number());
    else {
      std::fprintf(stderr, "lasp_bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  // Checked before MPI starts, as the flags are: the kernels' own checks of these are internal
  // ones (a bug, not bad input), and a negative size reached std::vector (both aborted).
  if (heads < 1 || dh < 1 || chunk < 1 || batch < 1) {
    std::fprintf(stderr, "lasp_bench: expected --heads, --dh, --chunk and --batch >= 1\n");
    return 2;
  }
  for (int64_t T : lens)
    if (T < 1) {
      std::fprintf(stderr, "lasp_bench: --lens: expected sequence lengths >= 1, got %lld\n",
                   static_cast<long long>(T));
      return 2;
    }

  World world(nullptr, nullptr);
  auto sp = world.comm().split(0, world.rank(), "sp");
  const int R = sp->size(), r = sp->rank();
  const bool root = r == 0;
  // From here on an error may be this rank's alone: end the job rather than leave the others
  // waiting in a collective.
  try {
    if (root)
      std::printf(
          "lasp_bench: sp=%d B=%lld H=%lld dh=%lld chunk=%lld decay=retnet, best of %lld\n"
          "%8s  %-8s  %12s  %14s  %6s  %13s\n",
          R, (long long)batch, (long long)heads, (long long)dh, (long long)chunk, (long long)iters,
          "seq len", "method", "ms fwd+bwd", "bytes/rank", "calls", "max rel diff");

    for (int64_t T : lens) {
      if (T % R != 0) {
        if (root) std::printf("%8lld  skipped: not a multiple of sp=%d\n", (long long)T, R);
        continue;
      }
      const int64_t n = T / R, numel = batch * n * heads * dh;
      Layer L;
      L.s = {batch, n, heads, dh, chunk};
      L.gamma = linear_attention_gammas(heads, true);
      // This rank's chunk of a deterministic sequence: the same numbers whatever sp is.
      // (B > 1 interleaves differently, which only changes the numbers.)
      auto fill = [&](Vec& x, const char* name, float std) {
        x.resize(static_cast<size_t>(numel));
        fill_normal(x.data(), numel, 1234, name, std, static_cast<uint64_t>(r) * numel);
      };
      fill(L.q, "q", 1.f);
      fill(L.k, "k", 1.f / std::sqrt(float(dh)));
      fill(L.v, "v", 1.f);
      fill(L.dout, "dout", 1.f);
      for (Vec* x : {&L.o, &L.dq, &L.dk, &L.dv}) x->assign(static_cast<size_t>(numel), 0.f);

      struct Method {
        const char* name;
        void (*run)(Comm&, Layer&);
      };
      const Method methods[] = {
          {"lasp2", run_lasp2}, {"ring", run_ring}, {"kv-gath", run_kv_gather}};
      Vec ref[4];
      for (const Method& m : methods) {
        // The warm-up run is also the one whose communication is counted.
        sp->reset_stats();
        m.run(*sp, L);
        double stats[3] = {double(sp->stats().total_bytes()), double(sp->stats().total_calls()), 0};
        double best = 1e30;
        for (int64_t it = 0; it < iters; ++it) {
          sp->barrier();
          const auto t0 = std::chrono::steady_clock::now();
          m.run(*sp, L);
          sp->barrier();
          const double ms =
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
          best = std::min(best, ms);
        }
        stats[2] = best;
        double diff = 0;
        if (m.run == run_lasp2) {
          ref[0] = L.o, ref[1] = L.dq, ref[2] = L.dk, ref[3] = L.dv;
        } else {
          const Vec* got[4] = {&L.o, &L.dq, &L.dk, &L.dv};
          for (int i = 0; i < 4; ++i) diff = std::max(diff, max_rel_diff(*got[i], ref[i]));
        }
        sp->all_reduce_max_double(stats, 3);
        sp->all_reduce_max_double(&diff, 1);
        if (root) {
          char d[32] = "-";
          if (m.run != run_lasp2) std::snprintf(d, sizeof d, "%.2e", diff);
          std::printf("%8lld  %-8s  %12.2f  %14.0f  %6.0f  %13s\n", (long long)T, m.name, stats[2],
                      stats[0], stats[1], d);
          std::fflush(stdout);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lasp_bench: rank %d: %s\n", world.rank(), e.what());
    world.abort(2);
  }
  return 0;
}

}  // namespace

// An error before the measurement (none is expected: the flags are checked) is a message and
// exit 2, not an uncaught exception (SIGABRT).
int main(int argc, char** argv) {
  return strata::bench_main("lasp_bench", [&] { return run_bench(argc, argv); });
}
