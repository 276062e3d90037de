#pragma once
// Before anything is allocated: a lower bound on what one rank of the job will hold, compared
// with what it may use (train.max_memory_mb, else the machine's memory shared by the ranks on the
// node). A job that cannot fit stops with an InputError naming the keys that size it, instead
// of std::bad_alloc (or the OOM killer) minutes into the setup.
#include <string>

#include "launch/job_config.h"

namespace strata {

// Bytes, as doubles: the products of absurd sizes must not overflow on the way to the message.
struct MemoryEstimate {
  double params = 0, grads = 0, optimizer = 0;  // this rank's, after ZeRO sharding
  double activations = 0;                       // the smallest activation set of one micro-batch
  double batch_tokens = 0;                      // the loaded global batch (inputs and targets)
  double tracked() const { return params + grads + optimizer + activations; }
  double total() const { return tracked() + batch_tokens; }
};

// A lower bound: every rank holds at least this much (never refuses a job that fits).
MemoryEstimate estimate_rank_memory(const JobConfig& cfg);

// Memory this process may use: the smaller of physical memory and the cgroup limit, in bytes.
double machine_memory_bytes();

// Throws InputError when the estimate exceeds train.max_memory_mb (tracked memory) or
// machine_memory_bytes() / ranks_on_node.
void check_job_fits_memory(const JobConfig& cfg, int ranks_on_node);

}  // namespace strata
