#pragma once
// When a pipeline send's buffer is released: at a point fixed by the schedule, not by MPI's
// progress, so a rank's memory is the same every run and `strata plan` predicts it exactly.
//
// A send at index i of rank r is released after the first later action k of r's list at which
// the schedule proves the message received: the receiving rank's RECV of it happened before k
// through a chain of messages (r's RECV at k completed a message whose sender had, earlier in
// its list, learnt of that RECV, and so on). Once the receiver has the data the sender's request
// completes without the receiver doing anything more, so the wait at k returns at once. A send
// no such chain covers is released at the step's end, where every send is completed anyway.
// Only point-to-point messages count: the vocabulary collectives order the ranks too, but
// leaving them out only releases later, never too early.
#include <cstddef>
#include <vector>

#include "parallel/schedule.h"

namespace strata {

// Per action index of `rank`'s list: for a SEND_*, the index of the action after which its
// buffer is released, or the list's size for the step's end; for every other action, the list's
// size. The schedule must be lowered; one whose messages cannot all be matched in order (which
// the executor would hang on) releases everything at the step's end.
std::vector<size_t> send_release_points(const Schedule& schedule, int rank);

}  // namespace strata
