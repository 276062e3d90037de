#pragma once
// Token embedding over a vocabulary shard (vocabulary parallelism): this rank holds rows
// [row0, row0 + rows) of E. The forward writes the rows this shard owns and zeros elsewhere, so
// the caller's SUM all-reduce of h over the vocabulary group gives embedding_forward's h exactly
// (every token is owned by exactly one shard; the others add zeros). No communication here.
#include <cstdint>

namespace strata {

// E_shard: [rows, D] (row r is token row0 + r); tokens: [N]; h: [N, D], overwritten: E[t] for
// tokens t in [row0, row0 + rows), 0 otherwise (including t < 0).
template <class T>
void vocab_embedding_forward(const T* E_shard, int64_t row0, int64_t rows, const int32_t* tokens,
                             T* h, int64_t N, int64_t D);

// dE_shard[t - row0] += dh[n] for tokens t in the shard; others skipped. dh is the full [N, D]
// gradient (identical on every rank of the group). Rows in token order: deterministic.
template <class T>
void vocab_embedding_backward(const int32_t* tokens, const T* dh, T* dE_shard, int64_t row0,
                              int64_t rows, int64_t N, int64_t D);

}  // namespace strata
