#include "core/dnnl_matmul.h"

#include <dnnl.hpp>
#include <map>
#include <tuple>

#include "core/bf16_widened_matmul.h"
#include "core/error.h"

namespace strata {

namespace {

using dims = dnnl::memory::dims;
using dt = dnnl::memory::data_type;

auto key_of(const MatmulShape& s) {
  return std::tie(s.in, s.batch, s.ta, s.tb, s.M, s.N, s.K, s.lda, s.ldb, s.ldc, s.alpha, s.beta,
                  s.out_bf16);
}

struct ShapeLess {
  bool operator()(const MatmulShape& a, const MatmulShape& b) const {
    return key_of(a) < key_of(b);
  }
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

std::map<MatmulShape, Primitive, ShapeLess>& cache() {
  static std::map<MatmulShape, Primitive, ShapeLess> c;
  return c;
}

// A [rows, cols] operand read through its leading dimension, transposed when `t`, as a 2-D or
// (batch > 1) 3-D memory descriptor; the batch stride is the stored matrix's size.
dnnl::memory::desc operand_desc(dt type, int64_t batch, bool t, int64_t rows, int64_t cols,
                                int64_t ld) {
  const dims strides2 = t ? dims{1, ld} : dims{ld, 1};
  if (batch == 1) return dnnl::memory::desc({rows, cols}, type, strides2);
  const int64_t stored = t ? cols * ld : rows * ld;
  return dnnl::memory::desc({batch, rows, cols}, type, dims{stored, strides2[0], strides2[1]});
}

Primitive make(const MatmulShape& s) {
  const dt in = s.in == MatmulInput::bf16 ? dt::bf16 : dt::f32;
  Primitive p;
  // Strides express the transposes: op(A) [M, K] is A read column-major when ta.
  p.a = operand_desc(in, s.batch, s.ta, s.M, s.K, s.lda);
  p.b = operand_desc(in, s.batch, s.tb, s.K, s.N, s.ldb);
  p.c = operand_desc(s.out_bf16 ? dt::bf16 : dt::f32, s.batch, false, s.M, s.N, s.ldc);
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
    throw StrataError("oneDNN matmul " + std::to_string(s.batch) + "x" + std::to_string(s.M) + "x" +
                      std::to_string(s.N) + "x" + std::to_string(s.K) + ": " + e.what());
  }
  return p;
}

// Whether oneDNN makes bf16 matmuls on this CPU, asked once with a small shape: 2.6 has none
// below AVX-512 (not even its reference kernel), whatever the shape.
bool probe_bf16_matmul() {
  const dims d{16, 16};
  const dnnl::memory::desc a(d, dt::bf16, dims{16, 1}), c(d, dt::f32, dims{16, 1});
  try {
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), engine());
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

const Primitive& primitive(const MatmulShape& s) {
  auto it = cache().find(s);
  if (it == cache().end()) it = cache().emplace(s, make(s)).first;
  return it->second;
}

}  // namespace

bool dnnl_has_bf16_matmul() {
  static const bool has = probe_bf16_matmul();
  return has;
}

void dnnl_matmul(const MatmulShape& s, const void* A, const void* B, void* C) {
  if (s.in == MatmulInput::bf16 && !dnnl_has_bf16_matmul()) return bf16_widened_matmul(s, A, B, C);
  const Primitive& p = primitive(s);
  dnnl::memory a(p.a, engine(), const_cast<void*>(A));
  dnnl::memory b(p.b, engine(), const_cast<void*>(B));
  dnnl::memory c(p.c, engine(), C);
  try {
    p.matmul.execute(stream(), {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream().wait();
  } catch (const dnnl::error& e) {
    throw StrataError(std::string("oneDNN matmul failed: ") + e.what());
  }
}

std::string dnnl_matmul_impl(const MatmulShape& s) {
  if (s.in == MatmulInput::bf16 && !dnnl_has_bf16_matmul())
    return "bf16 widened to f32 on " + primitive(bf16_widened_shape(s)).impl;
  return primitive(s).impl;
}

int64_t dnnl_matmul_primitives() { return static_cast<int64_t>(cache().size()); }

std::vector<std::string> dnnl_matmul_bf16_impls() {
  std::vector<std::string> impls;
  for (const auto& [shape, p] : cache())
    if (shape.in == MatmulInput::bf16) impls.push_back(p.impl);
  return impls;
}

}  // namespace strata
