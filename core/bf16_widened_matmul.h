#pragma once
// The bf16 matmul on a CPU where oneDNN has none (no AVX-512: oneDNN 2.6 makes bf16 primitives
// only on avx512_core and up, e.g. not on an AVX2-only AMD EPYC): the bf16 operands are widened
// to fp32, exactly, and multiplied by oneDNN's fp32 matmul. The precision model is the bf16
// path's own (operands rounded to bf16 where they were stored, products exact, sums in fp32, C
// rounded once when stored in bf16), so every bf16 layer, test and job runs here with the same
// numerics as on AMX, only without the speed: it is slower than the fp32 path, which the
// trainer says once at start. Main thread only, as core/dnnl_matmul.h (the scratch is shared).
// The widened operands live in scratch kept for the process, grown to the largest call (the LM
// head's fp32 vocabulary tile and weights, tens of MiB on a big vocabulary) and outside the run's
// accounted memory categories, as oneDNN's own scratchpads are.
#include "core/dnnl_matmul.h"

namespace strata {

// The bf16 shape `s` (s.in == bf16) run as described; same arguments as dnnl_matmul.
void bf16_widened_matmul(const MatmulShape& s, const void* A, const void* B, void* C);

// The fp32 shape the widened operands run as: the same product with dense leading dimensions
// (C's kept unless C is stored in bf16, which goes through a dense fp32 scratch).
MatmulShape bf16_widened_shape(const MatmulShape& s);

}  // namespace strata
