#pragma once
// What `strata train` measured of its steps, per rank: the peak bytes of every memory category
// (the tracker's peaks restart with each step, so this is the largest step's) and the bytes each
// mesh axis moved in the last step. Written to <train.run_dir>/memory_r<RANK>.json when the run
// ends, so `strata plan`'s prediction can be checked against the run (tests/e2e/plan.sh).
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/memory.h"
#include "parallel/comm.h"

namespace strata {

class StepMeasure {
 public:
  // Around one train_step: the step's peaks are those of the tracker since begin() (the caller
  // resets them there); the communication counts the collectives posted in between.
  void begin(const std::vector<const Comm*>& comms);
  void end(const std::vector<const Comm*>& comms);
  int64_t steps() const { return steps_; }
  // {"rank":R,"pp_rank":P,"steps":N,"peak_bytes":{"params":..,"total":..},
  //  "comm_bytes_per_step":{"dp":..}}
  std::string json(int rank, int pp_rank) const;

 private:
  static std::map<std::string, int64_t> bytes_by_axis(const std::vector<const Comm*>& comms);

  std::array<int64_t, kNumMemCategories> peak_{};
  int64_t total_peak_ = 0;
  std::map<std::string, int64_t> at_begin_, last_step_;
  int64_t steps_ = 0;
};

}  // namespace strata
