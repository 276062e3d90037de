#pragma once
// Placement of the vocabulary-parallel passes (Yeung et al. 2024, "Balancing Pipeline
// Parallelism with Vocabulary Parallelism"; docs/PIPELINE.md, "Vocabulary passes") into a
// compute-only schedule: every rank gets EMBED_F, S, T and EMBED_B of every micro-batch, the
// collectives (EMBED_F, S, EMBED_B) in one order on every rank, each placed where the rank is
// near the moment the rank holding its data gets there, so collectives cost as little waiting as
// the compute-only schedule allows.
#include "parallel/schedule.h"
#include "parallel/schedule_sim.h"

namespace strata {

// `compute_only`: F/B/I/W actions only (a generator's output or a compute-only file), valid and
// deadlock-free. `costs`: what the placement simulates with (the vocabulary costs included).
// Each collective goes on its anchor where its data puts it, and on every other rank at the
// first action boundary after the anchor reaches it, in the simulated time of the schedule
// being built; T(mb) after S(mb), right after it or in a wait it fits (the faster of the
// ways, each simulated).
// Returns a compute-only + vocabulary schedule: validate_schedule accepts it, lower_schedule
// lowers it, and it runs to the end (the placement is a simulated witness; the argument is in
// the .cpp). InputError when the input is lowered, already holds vocabulary passes, breaks a
// rule or deadlocks.
Schedule add_vocab_passes(const Schedule& compute_only, const SimCosts& costs);

}  // namespace strata
