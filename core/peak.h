#pragma once
// Measured sgemm peak of this machine, the denominator of model-FLOP utilisation: measured, not
// taken from a datasheet, so MFU is relative to what strata::sgemm actually reaches here with
// the current thread count.
#include <cstdint>

namespace strata {

// Times strata::sgemm on n x n x n (one untimed warm-up call, then `reps` timed calls) and
// returns the best GFLOP/s. Note: the calls add to gemm_flops(); take FLOP deltas around steps.
double measure_sgemm_peak_gflops(int64_t n = 2048, int reps = 3);

// measure_sgemm_peak_gflops(2048, 5), measured on the first call and cached for the process:
// the same 2048^3 figure bench/gemm_peak reports. Best of 5 so that a busy neighbour during
// one repetition does not understate the peak (~0.5 s at start-up on 2 cores).
double cached_sgemm_peak_gflops();

// The same for the bf16 GEMM (core/gemm_bf16.h, bf16 operands, fp32 accumulation): the peak a
// bf16 run's GEMM FLOP/s is measured against. Adds to gemm_bf16_flops().
double measure_bf16_peak_gflops(int64_t n = 2048, int reps = 3);
double cached_bf16_peak_gflops();

}  // namespace strata
