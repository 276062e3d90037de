#pragma once
// Pipeline schedule generators: pure functions (pp, micro-batches) -> compute-only Schedule
// (F, B, I, W; lower_schedule in parallel/schedule_check.h adds the communication).
// Each throws InputError naming both numbers when the micro-batch count can't be served.
#include <string_view>

#include "parallel/schedule.h"

namespace strata {

enum class ScheduleKind { gpipe, one_f_one_b, interleaved, zb_h1 };

// "gpipe", "1f1b", "interleaved", "zb-h1" (the job-file spelling) <-> ScheduleKind.
std::string_view schedule_kind_name(ScheduleKind kind);
ScheduleKind parse_schedule_kind(std::string_view name);  // InputError listing the choices

// GPipe: every forward of every micro-batch, then every backward (in micro-batch order). Any m.
Schedule make_gpipe(int pp, int micro_batches);

// 1F1B (PipeDream-flush): rank r runs pp-1-r warm-up forwards, then alternates one forward and
// one backward, then drains the remaining backwards. Needs m >= pp.
// `lead` more warm-up forwards per rank (clamped to m) put each backward `lead` forwards later:
// with vocabulary parallelism (lead 1, the paper's 1F1B for Vocab-2: p + 1 micro-batches in
// flight on rank 0) the last stage runs F(k + 1) before B(k), so the S all-reduce of k overlaps
// that forward instead of stalling the last stage (parallel/schedule_vocab.h).
Schedule make_1f1b(int pp, int micro_batches, int lead = 0);

// Megatron's interleaved 1F1B: virtual_stages (v >= 2) stages per rank in loop placement, micro-
// batches processed in groups of pp per stage. Needs m % pp == 0 (as Megatron does).
Schedule make_interleaved(int pp, int micro_batches, int virtual_stages);

// ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): 1F1B with B split into I (input
// gradient, on the critical path) and W (weight gradient, off it). Rank r defers its W passes by
// r micro-batches, so the I chain runs ahead and the deferred W passes fill the cool-down
// bubble; at most pp micro-batches are in flight on any rank, 1F1B's peak. Needs m >= pp.
// `lead`: as for 1F1B (more warm-up forwards, the I passes later by as many).
Schedule make_zb_h1(int pp, int micro_batches, int lead = 0);

// Dispatch by kind; virtual_stages is used by interleaved only (and must be 1 for the others),
// lead by 1F1B and ZB-H1 only (ignored by the others).
Schedule make_schedule(ScheduleKind kind, int pp, int micro_batches, int virtual_stages = 1,
                       int lead = 0);

}  // namespace strata
