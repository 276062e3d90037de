#include "core/gemm_bf16.h"

#include <atomic>
#include <dnnl.hpp>
#include <map>
#include <tuple>

#include "core/error.h"
#include "core/gemm.h"
#include "core/profile.h"

namespace strata {

namespace {

std::atomic<int64_t> g_flops{0};

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;

struct Shape {
  bool ta, tb;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  auto key() const { return std::tie(ta, tb, M, N, K, lda, ldb, ldc, alpha, beta); }
  bool operator<(const Shape& o) const { return key() < o.key(); }
};

struct Primitive {
  dnnl::memory::desc a, b, c;
  dnnl::matmul matmul;
  std::string impl;
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

std::map<Shape, Primitive>& cache() {
  static std::map<Shape, Primitive> c;
  return c;
}

Primitive make(const Shape& s) {
  Primitive p;
  // Strides express the transposes: op(A) [M, K] is A read column-major when ta.
  p.a = dnnl::memory::desc({s.M, s.K}, dt::bf16, s.ta ? dims{1, s.lda} : dims{s.lda, 1});
  p.b = dnnl::memory::desc({s.K, s.N}, dt::bf16, s.tb ? dims{1, s.ldb} : dims{s.ldb, 1});
  p.c = dnnl::memory::desc({s.M, s.N}, dt::f32, dims{s.ldc, 1});
  dnnl::primitive_attr attr;
  if (s.alpha != 1.f) attr.set_output_scales(0, {s.alpha});
  if (s.beta != 0.f) {
    dnnl::post_ops ops;
    ops.append_sum(s.beta);
    attr.set_post_ops(ops);
  }
  try {
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.a, p.b, p.c), attr, engine());
    p.impl = pd.impl_info_str();
    p.matmul = dnnl::matmul(pd);
  } catch (const dnnl::error& e) {
    throw StrataError(std::string("oneDNN bf16 matmul ") + std::to_string(s.M) + "x" +
                      std::to_string(s.N) + "x" + std::to_string(s.K) + ": " + e.what());
  }
  return p;
}

const Primitive& primitive(const Shape& s) {
  auto it = cache().find(s);
  if (it == cache().end()) it = cache().emplace(s, make(s)).first;
  return it->second;
}

}  // namespace

void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  ProfScope prof_scope(ProfOp::gemm);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    gemm_scale_c(M, N, beta, C, ldc);  // oneDNN handles K = 0, but keep it explicit
    return;
  }
  const Primitive& p = primitive({ta, tb, M, N, K, lda, ldb, ldc, alpha, beta});
  dnnl::memory a(p.a, engine(), const_cast<bf16*>(A));
  dnnl::memory b(p.b, engine(), const_cast<bf16*>(B));
  dnnl::memory c(p.c, engine(), C);
  try {
    p.matmul.execute(stream(), {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream().wait();
  } catch (const dnnl::error& e) {
    throw StrataError(std::string("oneDNN bf16 matmul failed: ") + e.what());
  }
  g_flops.fetch_add(2 * M * N * K, std::memory_order_relaxed);
}

int64_t gemm_bf16_flops() { return g_flops.load(std::memory_order_relaxed); }

std::string gemm_bf16_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
  return primitive({ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 1.f, 0.f}).impl;
}

bool cpu_has_native_bf16() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

int64_t gemm_bf16_primitives() { return static_cast<int64_t>(cache().size()); }

}  // namespace strata
