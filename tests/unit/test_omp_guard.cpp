// No exception may leave an OpenMP region (std::terminate): OmpExceptionGuard brings the first
// one back to the calling thread, and the kernels whose bodies allocate or call GEMMs use it.
// A linear-attention chunk longer than the sequence is the sequence (issue 9: chunk_size=60000
// with seq_len 256 sized [C, C] tiles per thread, 14 GB each, and the bad_alloc terminated).
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/linear_attention.h"
#include "core/omp_guard.h"
#include "op_test_util.h"

namespace strata {
namespace {

TEST(OmpExceptionGuard, RethrowsTheFirstExceptionOnTheCallingThread) {
  omp_set_num_threads(2);
  OmpExceptionGuard guard;
  int64_t ran = 0;
#pragma omp parallel for schedule(static) reduction(+ : ran)
  for (int64_t i = 0; i < 64; ++i)
    guard.run([&] {
      ++ran;
      if (i == 3 || i == 40) throw InputError("bad item " + std::to_string(i));
    });
  EXPECT_GE(ran, 2);
  EXPECT_THROW(guard.rethrow(), InputError);
}

TEST(OmpExceptionGuard, NothingThrownNothingRethrown) {
  OmpExceptionGuard guard;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < 8; ++i) guard.run([] {});
  EXPECT_NO_THROW(guard.rethrow());
}

TEST(LinearAttention, ChunkLongerThanTheSequenceIsTheSequence) {
  omp_set_num_threads(2);
  const int64_t T = 48;
  const LinearAttentionShape whole{2, T, 2, 8, T};
  const LinearAttentionShape huge{2, T, 2, 8, int64_t{1} << 16};  // [C, C] floats: 16 GiB
  const size_t n = 2 * T * 2 * 8;
  const auto q = test::randn<float>(n, 1), k = test::randn<float>(n, 2),
             v = test::randn<float>(n, 3);
  const auto dout = test::randn<float>(n, 4);
  const auto gamma = linear_attention_gammas(2, true);
  std::vector<float> o1(n), o2(n);
  linear_attention_forward<float>(whole, q.data(), k.data(), v.data(), gamma.data(), o1.data(),
                                  nullptr, nullptr);
  linear_attention_forward<float>(huge, q.data(), k.data(), v.data(), gamma.data(), o2.data(),
                                  nullptr, nullptr);
  EXPECT_EQ(o1, o2);
  std::vector<float> dq1(n), dk1(n), dv1(n), dq2(n), dk2(n), dv2(n);
  linear_attention_backward<float>(whole, q.data(), k.data(), v.data(), gamma.data(), dout.data(),
                                   dq1.data(), dk1.data(), dv1.data(), nullptr, nullptr, nullptr);
  linear_attention_backward<float>(huge, q.data(), k.data(), v.data(), gamma.data(), dout.data(),
                                   dq2.data(), dk2.data(), dv2.data(), nullptr, nullptr, nullptr);
  EXPECT_EQ(dq1, dq2);
  EXPECT_EQ(dk1, dk2);
  EXPECT_EQ(dv1, dv2);
}

}  // namespace
}  // namespace strata
