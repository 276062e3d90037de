#pragma once
// The MPI side of the collective watchdog (parallel/watchdog.h): every blocking operation of
// MpiComm is a nonblocking MPI call followed by mpi_wait_all, one poll loop with a deadline, and
// MpiRequest::wait goes through it too.
//
// When the deadline passes, the rank (1) prints what it waits for and writes its flight recorder,
// so both exist even if another rank's MPI_Abort ends it a moment later; (2) tells every rank
// "I am stuck at (group, operation, sequence number)" on a communicator kept for this alone and
// listens for the same from them for the grace period; (3) throws CollectiveTimeout naming the
// ranks of the group that did not answer (dead, stopped, or stuck in computation) and where the
// ranks that did answer are waiting. Nothing of this runs on the normal path.
#include <mpi.h>

#include "parallel/flight_recorder.h"

namespace strata {

// The communicator of the timeout exchange: MpiEnv duplicates MPI_COMM_WORLD for it at start
// (collectively). Without one, a timed-out rank names only the group it waited on.
void set_watchdog_comm(MPI_Comm comm);
// Tests only, collective over MPI_COMM_WORLD: a fresh exchange communicator, so reports left
// unread by an earlier exchange are never taken for answers to the next.
void renew_watchdog_comm();

// Waits for reqs[0..n) under the watchdog's deadline: spins briefly, then yields and sleeps in
// growing steps (at most 1 ms, and 5% of the time waited so far), so an oversubscribed machine is
// not starved by waiting ranks. `what` is the operation's flight record (its id is completed
// here). Returns MPI's return code; throws CollectiveTimeout when the deadline passes.
int mpi_wait_all(int n, MPI_Request* reqs, MPI_Status* statuses, const FlightRecord& what);

}  // namespace strata
