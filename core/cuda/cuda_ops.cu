#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/cuda/cuda_ops.h"

namespace strata::cuda {

static void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
static void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

void* device_alloc(int64_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, static_cast<size_t>(bytes)), "cudaMalloc");
  return p;
}
void device_free(void* p) { cudaFree(p); }
void copy_to_device(void* dst, const void* src, int64_t bytes) {
  check(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}
void copy_to_host(void* dst, const void* src, int64_t bytes) {
  check(cudaMemcpy(dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}
void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

static cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t x;
    check(cublasCreate(&x), "cublasCreate");
    return x;
  }();
  return h;
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  check(cublasSgemm(handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                    trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                    static_cast<int>(K), &alpha, B, static_cast<int>(ldb), A, static_cast<int>(lda),
                    &beta, C, static_cast<int>(ldc)),
        "cublasSgemm");
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n,
                             float decay_factor, float b1, float b2, float eps, float step_size,
                             float bc2_sqrt) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float gi = g[i];
  const float pi = p[i] * decay_factor;  // decoupled weight decay first
  const float mi = m[i] + (1.f - b1) * (gi - m[i]);
  const float vi = v[i] * b2 + ((1.f - b2) * gi) * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = pi + ((-step_size) * mi) / (sqrtf(vi) / bc2_sqrt + eps);
}

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  const double bc1 = 1.0 - std::pow(double(beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(beta2), double(step));
  const float decay_factor = static_cast<float>(1.0 - double(lr) * double(weight_decay));
  const float step_size = static_cast<float>(double(lr) / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  adamw_kernel<<<static_cast<unsigned>(blocks), threads>>>(p, g, m, v, n, decay_factor, beta1,
                                                           beta2, eps, step_size, bc2_sqrt);
  check(cudaGetLastError(), "adamw_kernel launch");
}

}  // namespace strata::cuda
