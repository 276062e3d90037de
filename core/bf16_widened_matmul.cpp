#include "core/bf16_widened_matmul.h"

#include <vector>

#include "core/bf16.h"

namespace strata {

namespace {

// A stored operand: `batch` matrices of [rows, cols] with row stride ld, one after another with
// batch stride rows * ld (core/dnnl_matmul.cpp's descriptors), so batch * rows rows of stride ld.
struct Stored {
  int64_t rows, cols, ld;  // rows over the whole batch
};

// The operand op(X) [op_rows, op_cols] as stored: transposed, its rows are op(X)'s columns.
Stored stored_of(int64_t batch, bool t, int64_t op_rows, int64_t op_cols, int64_t ld) {
  return t ? Stored{batch * op_cols, op_rows, ld} : Stored{batch * op_rows, op_cols, ld};
}

// Widens a stored bf16 operand into a dense fp32 one (ld = cols), every element exactly.
void widen(const Stored& s, const bf16* x, std::vector<float>& out) {
  out.resize(static_cast<size_t>(s.rows * s.cols));
  from_bf16_rows(x, s.ld, out.data(), s.cols, s.rows, s.cols);
}

// Scratch for the widened operands, grown to the largest shape seen (main thread only).
struct Scratch {
  std::vector<float> a, b, c;
};

Scratch& scratch() {
  static Scratch s;
  return s;
}

}  // namespace

MatmulShape bf16_widened_shape(const MatmulShape& s) {
  MatmulShape f = s;
  f.in = MatmulInput::f32;
  f.out_bf16 = false;
  f.lda = s.ta ? s.M : s.K;
  f.ldb = s.tb ? s.K : s.N;
  if (s.out_bf16) f.ldc = s.N;
  return f;
}

void bf16_widened_matmul(const MatmulShape& s, const void* A, const void* B, void* C) {
  Scratch& w = scratch();
  widen(stored_of(s.batch, s.ta, s.M, s.K, s.lda), static_cast<const bf16*>(A), w.a);
  widen(stored_of(s.batch, s.tb, s.K, s.N, s.ldb), static_cast<const bf16*>(B), w.b);
  const MatmulShape f = bf16_widened_shape(s);
  if (!s.out_bf16) {
    dnnl_matmul(f, w.a.data(), w.b.data(), C);
    return;
  }
  const Stored c = stored_of(s.batch, false, s.M, s.N, s.ldc);
  if (s.beta != 0.f)
    widen(c, static_cast<const bf16*>(C), w.c);
  else
    w.c.resize(static_cast<size_t>(c.rows * c.cols));
  dnnl_matmul(f, w.a.data(), w.b.data(), w.c.data());
  // the dense fp32 result rounded into the stored bf16 C, to nearest even
  to_bf16_rows(w.c.data(), c.cols, static_cast<bf16*>(C), c.ld, c.rows, c.cols);
}

}  // namespace strata
