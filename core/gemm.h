#pragma once
// The one GEMM entry point. Row-major, BLAS semantics:
//   C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C
// op(X) = X or X^T. Backed by oneDNN's sgemm (measured fastest here; see bench/gemm_peak.cpp).
// Every call adds 2*M*N*K to a FLOP counter so achieved FLOP/s is measured, not estimated.
#include <cstdint>

namespace strata {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Y[M,N] (+)= X[M,K] W[N,K]^T  -- a Linear layer with PyTorch [out,in] weights.
inline void linear_forward(const float* X, const float* W, float* Y, int64_t M, int64_t N,
                           int64_t K, bool accumulate = false) {
  sgemm(false, true, M, N, K, 1.f, X, K, W, K, accumulate ? 1.f : 0.f, Y, N);
}
// dX[M,K] (+)= dY[M,N] W[N,K];   dW[N,K] += dY^T X.
inline void linear_backward_input(const float* dY, const float* W, float* dX, int64_t M, int64_t N,
                                  int64_t K, bool accumulate = false) {
  sgemm(false, false, M, K, N, 1.f, dY, N, W, K, accumulate ? 1.f : 0.f, dX, K);
}
inline void linear_backward_weight(const float* dY, const float* X, float* dW, int64_t M, int64_t N,
                                   int64_t K) {
  sgemm(true, false, N, K, M, 1.f, dY, N, X, K, 1.f, dW, K);
}

// The same contract overloaded by scalar type, for kernels written as templates: float is
// sgemm (oneDNN; single-threaded when called from an OpenMP worker), double a plain loop that
// exists only so gradient checks run at double precision through the very same algorithm.
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// C[M,N] = beta * C (0 when beta is 0): what a GEMM with K = 0 leaves, for every backend.
inline void gemm_scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
}

// Total GEMM FLOPs issued by this process since start.
int64_t gemm_flops();
// Adds to that counter, for fp32 GEMMs issued by other entry points (core/batched_gemm.h).
void count_gemm_flops(int64_t flops);

}  // namespace strata
