// Included (last) by a file whose floating-point must round every multiply and add on its own,
// as PyTorch's one-kernel-per-operation optimizer updates do: with contraction into FMAs (GCC's
// default under -march=native) results drift an ulp or so from PyTorch, and from a CUDA build
// of the same step. It switches contraction off for the rest of the including file, so no
// #pragma once: every file that wants it says so.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
