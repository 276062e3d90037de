#pragma once
// oneDNN's matmul primitive, created once per shape and reused: creating one costs far more than
// running a small GEMM. The one place the library's matmul primitives are made and cached, for
// the bf16 GEMM (core/gemm_bf16.h) and the batched GEMMs of the attention kernels
// (core/batched_gemm.h). Row-major, BLAS semantics, per batch entry b < batch:
//   C[b][M,N] = alpha * op(A[b])[M,K] * op(B[b])[K,N] + beta * C[b]
// with the batch entries of each operand dense one after another (oneDNN runs strided batches
// on a slow reference kernel, so the callers pack into this layout). A and B are fp32 or bf16
// (both the same), the accumulation fp32 and C fp32 (or bf16 on request). Deterministic for a fixed
// shape and thread count. Main thread only (the cache is not locked; the GEMM itself is
// multi-threaded).
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

enum class MatmulInput { f32, bf16 };

struct MatmulShape {
  MatmulInput in = MatmulInput::f32;
  int64_t batch = 1;
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.f, beta = 0.f;
  bool out_bf16 = false;  // C stored in bf16 (the fp32 accumulation rounded once, to nearest even)
};

// Whether oneDNN has bf16 matmuls on this CPU (AVX-512 and up); without, dnnl_matmul runs bf16
// shapes widened to fp32 (core/bf16_widened_matmul.h), the same numerics, slower.
bool dnnl_has_bf16_matmul();

// Runs the cached primitive of `s` on raw pointers (A and B of the input type, C fp32 or, with
// out_bf16, bf16). M, N, K >= 1.
void dnnl_matmul(const MatmulShape& s, const void* A, const void* B, void* C);

// oneDNN's implementation for the shape (e.g. "brg:avx512_core_amx_bf16").
std::string dnnl_matmul_impl(const MatmulShape& s);

// Primitives created so far (tests: the cache must not grow with repeated shapes).
int64_t dnnl_matmul_primitives();

// The implementation of each bf16 primitive created so far (tests: a bf16 GEMM that left the
// AMX kernels for a slower one, e.g. on a layout they do not take).
std::vector<std::string> dnnl_matmul_bf16_impls();

}  // namespace strata
