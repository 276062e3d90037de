#include "core/gemm_bf16.h"

#include <algorithm>
#include <atomic>
#include <dnnl.hpp>

#include "core/dnnl_matmul.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/profile.h"

namespace strata {

namespace {

std::atomic<int64_t> g_flops{0};

MatmulShape shape_of(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                     int64_t ldc, float alpha, float beta) {
  MatmulShape s;
  s.in = MatmulInput::bf16;
  s.ta = ta, s.tb = tb, s.M = M, s.N = N, s.K = K, s.lda = lda, s.ldb = ldb, s.ldc = ldc;
  s.alpha = alpha, s.beta = beta;
  return s;
}

}  // namespace

// The reduction of a product with Aᵀ (a weight gradient: dYᵀ X over the tokens) runs in pieces
// of this many rows of A and B, each adding into C: oneDNN 2.6 on AMX ran the step benchmark's
// weight-gradient shapes (dW [1408|512, 512|1408] over K = 2048 tokens, 2 threads) 6-25% faster
// as four K = 512 products than as one, side by side; pieces of 256 or 1024 were slower than
// either (a piece of dY, 512 x 1408 bf16, stays within a core's 2 MiB L2). A fixed piece, so the
// sums (and the bits) depend on the shape only.
constexpr int64_t kTransposedReductionPiece = 512;

void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  ProfScope prof_scope(ProfOp::gemm);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    gemm_scale_c(M, N, beta, C, ldc);  // oneDNN handles K = 0, but keep it explicit
    return;
  }
  const int64_t piece = ta && !tb ? kTransposedReductionPiece : K;
  for (int64_t k0 = 0; k0 < K; k0 += piece) {
    const int64_t k = std::min(piece, K - k0);
    // op(A) columns k0.. are rows k0.. of the stored Aᵀ; op(B) rows k0.. of the stored B
    dnnl_matmul(shape_of(ta, tb, M, N, k, lda, ldb, ldc, alpha, k0 ? 1.f : beta), A + k0 * lda,
                B + k0 * ldb, C);
  }
  count_gemm_bf16_flops(2 * M * N * K);
}

void gemm_bf16_to_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const bf16* A,
                       int64_t lda, const bf16* B, int64_t ldb, bf16* C, int64_t ldc) {
  ProfScope prof_scope(ProfOp::gemm);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = 0;
    return;
  }
  MatmulShape s = shape_of(ta, tb, M, N, K, lda, ldb, ldc, 1.f, 0.f);
  s.out_bf16 = true;
  dnnl_matmul(s, A, B, C);
  count_gemm_bf16_flops(2 * M * N * K);
}

int64_t gemm_bf16_flops() { return g_flops.load(std::memory_order_relaxed); }

void count_gemm_bf16_flops(int64_t flops) { g_flops.fetch_add(flops, std::memory_order_relaxed); }

std::string gemm_bf16_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  return dnnl_matmul_impl(shape_of(ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 1.f, 0.f));
}

bool cpu_has_native_bf16() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

int64_t gemm_bf16_primitives() { return dnnl_matmul_primitives(); }

}  // namespace strata
