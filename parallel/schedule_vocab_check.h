#pragma once
// The validator's rules for vocabulary-parallel schedules (docs/PIPELINE.md, "Vocabulary
// passes"): validate_schedule calls it once the transformer stages' own rules hold (every F and
// backward exists once), so it can locate the compute actions the vocabulary passes hang on.
#include "parallel/schedule.h"

namespace strata {

// Throws ScheduleRuleError (parallel/schedule_check.h) naming rank, action index and rule:
//   - each vocabulary action: its prescribed stage (S, T: the last; EMBED_*: 0), a micro-batch in
//     range, no peer, once per (rank, type, micro-batch);
//   - all four kinds on every rank or on none (no mixing), and then every (rank, kind,
//     micro-batch) present;
//   - the collectives (EMBED_F, S, EMBED_B) in one order, as (type, micro-batch), on every rank;
//   - T(mb) after S(mb) on each rank;
//   - on stage 0's rank EMBED_F(mb) before F(0, mb) and EMBED_B(mb) after B/I(0, mb); on the last
//     stage's rank S(mb) after F(last, mb) and before B/I(last, mb).
// A schedule without vocabulary actions passes untouched.
void check_vocab_passes(const Schedule& schedule);

}  // namespace strata
