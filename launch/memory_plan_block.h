#pragma once
// One block's forward and backward as `strata plan` replays them on a Ledger: the buffers
// models/block.cpp (and LASP-2's parallel/sequence.cpp) allocates, in its order, with their sizes
// and lifetimes (which saved tensors a GEMM operand keeps alive past their drop, what bf16 adds).
// Kept beside block.cpp's order by tests/e2e/plan.sh, which compares the replay with what `strata
// train` measures.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "launch/memory_ledger.h"

namespace strata {

struct BlockDims {
  int64_t B = 0, T = 0;  // this rank's micro-batch: sequences, tokens of its chunk
  int64_t Tall = 0;      // tokens of the whole sequence (T x sp)
  int64_t D = 0, H = 0, dh = 0, Hkv = 0, F = 0;
  int64_t chunk = 1;  // linear attention's chunk_size
  char mixer = 'L';
  bool bf16 = false;            // train.precision: bf16
  int64_t sp = 1, sp_rank = 0;  // the sequence-parallel group (parallel/sequence.cpp's buffers)
  int64_t N() const { return B * T; }
  int64_t E() const { return H * dh; }
  int64_t Ekv() const { return (mixer == 'S' ? Hkv : H) * dh; }
  // Floats of an n-value GEMM operand in the precision (models/gemm_ops.h operand_floats).
  int64_t operand(int64_t n) const { return bf16 ? (n + 1) / 2 : n; }
};

// A block's saved set: named page-aligned buffers (offload/saved_tensors.h).
struct SavedSet {
  std::vector<std::pair<std::string, Ledger::Id>> items;
  void add(Ledger& l, const std::string& name, int64_t floats);
  void drop(Ledger& l, const std::string& name);
  // Takes a tensor out of the set without freeing it: an operand still holds the buffer.
  Ledger::Id detach(const std::string& name);
  void clear(Ledger& l);
  double bytes(const Ledger& l) const;
  double bytes_of(const Ledger& l, const std::string& name) const;
};

// Block::forward: the saved set it leaves (its output goes to a buffer the caller holds).
SavedSet replay_block_forward(Ledger& l, const BlockDims& d, bool with_input = false);

// Block::backward consuming `s`; mlp_done / attention_done where the real one calls them
// (the store prefetches the previous block's swapped tensors there).
struct BackwardPoints {
  std::function<void()> mlp_done, attention_done;
};
// `deferred`: the input-gradient pass I of the zero-bubble schedules (Block::backward_input):
// what the recorded weight-gradient GEMMs hold until W (models/deferred_grads.h) goes there
// instead of being freed, with the copies they make of operands that are overwritten later.
void replay_block_backward(Ledger& l, const BlockDims& d, SavedSet& s, const BackwardPoints& at,
                           std::vector<Ledger::Id>* deferred = nullptr);

}  // namespace strata
