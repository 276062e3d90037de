#include "core/batched_gemm.h"

#include "core/dnnl_matmul.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/profile.h"

namespace strata {

namespace {

MatmulShape dense_shape(MatmulInput in, bool ta, bool tb, int64_t batch, int64_t M, int64_t N,
                        int64_t K, float beta) {
  MatmulShape s;
  s.in = in;
  s.batch = batch;
  s.ta = ta, s.tb = tb, s.M = M, s.N = N, s.K = K;
  s.lda = ta ? M : K, s.ldb = tb ? K : N, s.ldc = N;
  s.beta = beta;
  return s;
}

// An empty product leaves beta * C (0 when beta is 0), as the single GEMMs do.
template <class T>
bool empty_product(int64_t batch, int64_t M, int64_t N, int64_t K, T beta, T* C) {
  if (batch == 0 || M == 0 || N == 0) return true;
  if (K > 0) return false;
  for (int64_t i = 0; i < batch * M * N; ++i) C[i] = beta == T(0) ? T(0) : beta * C[i];
  return true;
}

// The oneDNN forms: the FLOPs go to the counter of their input precision.
void run_dnnl(MatmulInput in, bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K,
              const void* A, const void* B, float beta, float* C) {
  ProfScope prof_scope(ProfOp::gemm);
  if (empty_product(batch, M, N, K, beta, C)) return;
  dnnl_matmul(dense_shape(in, ta, tb, batch, M, N, K, beta), A, B, C);
  if (in == MatmulInput::bf16)
    count_gemm_bf16_flops(2 * batch * M * N * K);
  else
    count_gemm_flops(2 * batch * M * N * K);
}

}  // namespace

void batched_gemm(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const float* A,
                  const float* B, float beta, float* C) {
  run_dnnl(MatmulInput::f32, ta, tb, batch, M, N, K, A, B, beta, C);
}

void batched_gemm(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const bf16* A,
                  const bf16* B, float beta, float* C) {
  run_dnnl(MatmulInput::bf16, ta, tb, batch, M, N, K, A, B, beta, C);
}

void batched_gemm(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const double* A,
                  const double* B, double beta, double* C) {
  for (int64_t b = 0; b < batch; ++b)
    gemm(ta, tb, M, N, K, 1.0, A + b * M * K, ta ? M : K, B + b * K * N, tb ? K : N, beta,
         C + b * M * N, N);
}

}  // namespace strata
