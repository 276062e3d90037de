#pragma once
// The compute precision of a run (train.precision): what the GEMMs' operands are stored and
// multiplied in. fp32 is the default and the bit-exact reference. bf16 is mixed precision, the
// precision model of the GPU path too: GEMM operands in bf16 (weights cast once per step from
// the fp32 master weights, activations saved for GEMMs kept in bf16), fp32 accumulation, and
// everything else in fp32 (master weights, gradients as accumulated, optimizer states, norms'
// statistics, softmax, the linear-attention states, the loss).
#include <string>

namespace strata {

enum class Precision { fp32, bf16 };

inline const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

}  // namespace strata
