#pragma once
// How ranks report to the run monitor on rank 0 without a collective in the training step: a
// duplicate of the world communicator kept for this alone, on which every rank > 0 posts small
// nonblocking sends to rank 0 and rank 0 collects whatever has arrived (MPI_Iprobe) whenever it
// looks. A sender never waits: while its previous message is still in flight a new one is
// dropped (the next heartbeat says the same, newer). Main thread only, like every MPI call of
// the job (MPI_THREAD_FUNNELED); it never goes through the watchdog's waits, so it may be used
// from inside them.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm.h"

namespace strata {

class HeartbeatChannel {
 public:
  // Collective over `world` (every rank at the same point, before the first step). nullptr when
  // the world is not an MPI communicator of more than one rank (nothing to report across).
  static std::unique_ptr<HeartbeatChannel> create(Comm& world);
  virtual ~HeartbeatChannel() = default;

  // Ranks > 0: posts `text` to rank 0 unless the previous message is still in flight.
  virtual bool send(const std::string& text) = 0;
  // Rank 0: (source rank, text) of every message that has arrived.
  virtual std::vector<std::pair<int, std::string>> receive() = 0;
};

}  // namespace strata
