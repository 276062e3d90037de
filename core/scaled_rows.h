#pragma once
// The log-domain sum of records [m | k scaled values | plain values]: a record stands for the
// values exp(m) a_i (i < k) and the plain values b_j. Two records combine to M = max(m, m'),
// a_i exp(m - M) + a'_i exp(m' - M), b_j + b'_j. The online softmax's statistics (max, sum of
// exponentials, the softmax-weighted sum of weight rows) meet this way over a vocabulary group in
// one all-reduce (parallel/comm.h iall_reduce_scaled_rows, models/vocab_head.h) instead of a MAX
// all-reduce and a SUM all-reduce that has to wait for it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace strata {

// inout[r] = combine(in[r], inout[r]) for `rows` records of `row_len` values, `scaled` of them
// (after m) scaled. A record that accumulated nothing (m = -inf) has only zeros to scale: it
// weighs 0, never exp(-inf - (-inf)). Both weights are computed the same way, so the combine is
// exactly commutative: every rank of an all-reduce gets the same bits whatever the pairing.
template <class T>
void combine_scaled_rows(const T* in, T* inout, int64_t rows, int64_t row_len, int64_t scaled) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = in + r * row_len;
    T* y = inout + r * row_len;
    const T M = std::max(x[0], y[0]);
    const T fx = x[0] == kNegInf ? T(0) : std::exp(x[0] - M);
    const T fy = y[0] == kNegInf ? T(0) : std::exp(y[0] - M);
    y[0] = M;
    for (int64_t i = 1; i <= scaled; ++i) y[i] = x[i] * fx + y[i] * fy;
    for (int64_t j = scaled + 1; j < row_len; ++j) y[j] = x[j] + y[j];
  }
}

}  // namespace strata
