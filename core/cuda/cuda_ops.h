#pragma once
// CUDA path (built whenever the toolkit is found). Device buffers, cuBLAS GEMM with the same
// row-major contract as core/gemm.h, and the element-wise kernels the optimizer needs.
// Plain C++ header so CPU code can call it without nvcc.
#include <cstdint>

namespace strata::cuda {

int device_count();  // 0 when no driver or no GPU: the CPU path is then used
void* device_alloc(int64_t bytes);
void device_free(void* p);
void copy_to_device(void* dst, const void* src, int64_t bytes);
void copy_to_host(void* dst, const void* src, int64_t bytes);
void synchronize();

// Row-major C[M,N] = alpha op(A) op(B) + beta C on device pointers (fp32, TF32 off).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Fused AdamW on device over one decay segment, in the CPU optimizer's order (optim/adamw.cpp,
// = torch.optim.AdamW): p -= lr*wd*p first (decoupled; pass weight_decay 0 for norm gains), then
// m, v updates and p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps), bias corrections in double.
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step);

}  // namespace strata::cuda
