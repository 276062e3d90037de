#pragma once
// Batched GEMMs for the attention kernels, which multiply many small matrices (a chunk or a tile
// per sequence and head): one call runs them all, so the library keeps its threads busy and its
// AMX/AVX-512 tiles loaded, where a call per matrix spent most of its time getting started.
// Row-major, for every batch entry b < batch:
//   C[b][M,N] = op(A[b])[M,K] * op(B[b])[K,N] + beta * C[b],   op(X) = X or Xᵀ,
// every matrix stored dense (A as [M,K] or, transposed, [K,M]; C as [M,N]) and the batch entries
// one after another. float runs oneDNN's fp32 matmul, bf16 operands oneDNN's bf16 matmul with
// fp32 accumulation (core/dnnl_matmul.h); double is a plain loop, so gradient checks run the very
// same algorithm at double precision. FLOPs are counted with core/gemm.h's (fp32, double) or
// core/gemm_bf16.h's (bf16) counter. Main thread only, as core/dnnl_matmul.h.
#include <cstdint>

#include "core/bf16.h"

namespace strata {

void batched_gemm(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const float* A,
                  const float* B, float beta, float* C);
void batched_gemm(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const bf16* A,
                  const bf16* B, float beta, float* C);
void batched_gemm(bool ta, bool tb, int64_t batch, int64_t M, int64_t N, int64_t K, const double* A,
                  const double* B, double beta, double* C);

}  // namespace strata
