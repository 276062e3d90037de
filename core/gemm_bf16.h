#pragma once
// The bf16 GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C with A and B in bf16 and
// C (and the accumulation) in fp32, row-major, BLAS semantics as core/gemm.h. Backed by oneDNN's
// matmul primitive, which runs it on the AMX tiles (or AVX512-BF16) where the CPU has them:
// oneDNN's implementation string reads "brg:avx512_core_amx" then. A primitive is created once
// per shape (transposes, sizes, leading dimensions, alpha, beta) and reused: creating one costs
// far more than running a small GEMM. Deterministic for a fixed shape and thread count.
// Main thread only (the primitive cache is not locked; the GEMM itself is multi-threaded).
#include <cstdint>
#include <string>

#include "core/bf16.h"

namespace strata {

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// The same with C stored in bf16 (alpha 1, beta 0): the fp32 accumulation rounded once as it is
// written, for an activation kept in bf16 anyway (no fp32 copy of it, no conversion pass).
void gemm_bf16_to_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const bf16* A,
                       int64_t lda, const bf16* B, int64_t ldb, bf16* C, int64_t ldc);

// Total FLOPs issued through gemm_bf16 by this process since start (2 M N K per call).
int64_t gemm_bf16_flops();
// Adds to that counter, for bf16 GEMMs issued by other entry points (core/batched_gemm.h).
void count_gemm_bf16_flops(int64_t flops);

// oneDNN's implementation for this shape (e.g. "brg:avx512_core_amx"), for logs and benchmarks.
std::string gemm_bf16_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K);

// Whether this CPU runs bf16 natively (AVX512-BF16 or AMX-BF16, as oneDNN sees it); without,
// oneDNN emulates bf16 on AVX-512, and below AVX-512 the operands are widened to fp32 for
// oneDNN's fp32 matmul (core/bf16_widened_matmul.h): the same numerics, slower than fp32.
bool cpu_has_native_bf16();

// Primitives created so far (tests: the cache must not grow with repeated shapes).
int64_t gemm_bf16_primitives();

}  // namespace strata
