#pragma once
// Fused softmax cross-entropy forward + backward over rows of logits.
#include <cstdint>

namespace strata {

// logits: [N, V]; targets: [N] (-1 = ignored). Returns the SUM of per-token losses (double) and,
// when dlogits != nullptr, writes dlogits = scale * (softmax(logits) - onehot(target)) for
// counted rows and 0 for ignored ones. `scale` is 1 / (global count of counted tokens), so the
// gradient is that of the globally normalised loss. dlogits may alias logits.
template <class T>
double cross_entropy_forward_backward(const T* logits, const int32_t* targets, T* dlogits,
                                      int64_t N, int64_t V, T scale);

}  // namespace strata
