#pragma once
// ZeRO's memory and communication as `strata plan` replays them: parallel/zero.cpp's buffers
// (full or sharded parameters, gradients and optimizer states, stage-3 gathers, reduce-scatter
// scratch, the full gradients alive while reductions drain) on a Ledger, and its collectives'
// bytes under comm_stats.h's convention.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/unit_pass.h"
#include "launch/memory_ledger.h"

namespace strata {

struct ZeroReplayUnit {
  int64_t id = 0, numel = 0;
  bool bf16_copy = false;  // its GEMMs read a bf16 copy of the parameters (train.precision bf16)
  bool pinned = false;
};

class ZeroReplay {
 public:
  // `replicas`/`index`: the group ZeRO shards over (dp x sp) and this rank's place in it.
  ZeroReplay(Ledger& l, int stage, int64_t replicas, int64_t index, bool adamw,
             bool reduce_once_per_step, std::vector<ZeroReplayUnit> units, double* axis_bytes);
  void before(int64_t id, UnitPass pass);
  void after(int64_t id, UnitPass pass, bool last);
  void prefetch(int64_t id);
  // REDUCE_GRAD: the reductions of model units [first, end) not started yet.
  void finish_grads(int64_t first, int64_t end);
  // The step's end: remaining reductions, the norm's all-reduce, the update's all-gathers.
  void finish_step();

 private:
  struct Slot {
    ZeroReplayUnit u;
    int64_t shard = 0;
    Ledger::Id full_params = Ledger::kNone, bf16 = Ledger::kNone, full_grads = Ledger::kNone;
    bool dirty = false;
  };
  struct Pending {
    int64_t slot = 0;
    Ledger::Id scratch = Ledger::kNone;
  };
  Slot* slot(int64_t id);
  void gather(Slot& s);
  void release(Slot& s);
  void reduce(int64_t k);
  void drain(size_t keep);
  double padded(const Slot& s) const { return static_cast<double>(s.shard * replicas_) * 4; }

  Ledger& l_;
  int stage_;
  int64_t replicas_;
  bool reduce_once_;
  std::vector<Slot> slots_;
  std::vector<Pending> pending_;
  double* bytes_;  // the replica axis' communication
};

}  // namespace strata
