#include "core/gemm.h"

#include <dnnl.h>

#include <atomic>
#include <string>

#include "core/error.h"
#include "core/profile.h"

namespace strata {

static std::atomic<int64_t> g_flops{0};

int64_t gemm_flops() { return g_flops.load(std::memory_order_relaxed); }

void count_gemm_flops(int64_t flops) { g_flops.fetch_add(flops, std::memory_order_relaxed); }

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  ProfScope prof_scope(ProfOp::gemm);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    gemm_scale_c(M, N, beta, C, ldc);  // oneDNN handles K = 0, but keep it explicit
    return;
  }
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A,
                                      lda, B, ldb, beta, C, ldc);
  if (st != dnnl_success)
    throw StrataError("dnnl_sgemm failed with status " + std::to_string(static_cast<int>(st)));
  count_gemm_flops(2 * M * N * K);
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0 ? 0.0 : beta * C[i * ldc + j];
  for (int64_t i = 0; i < M; ++i)
    for (int64_t p = 0; p < K; ++p) {
      const double a = alpha * (ta ? A[p * lda + i] : A[i * lda + p]);
      if (tb)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += a * B[j * ldb + p];
      else
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += a * B[p * ldb + j];
    }
}

}  // namespace strata
