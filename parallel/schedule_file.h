#pragma once
// Schedule files (parallel.schedule_file): the CSV form of parallel/schedule.h, checked before
// anything runs.
#include <string>

#include "parallel/schedule.h"

namespace strata {

// Reads, parses (strict), validates and simulates the schedule in `path`. Every failure is an
// InputError (exit 2): format errors as "PATH:LINE: what was expected"; a violated rule or a
// deadlock as "PATH:LINE: ..." naming the line of the offending action, or "PATH: ..." when the
// rule concerns no single line (a missing micro-batch).
Schedule load_schedule_file(const std::string& path);

// The same checks on CSV text already in memory; `file_name` is used in the messages.
Schedule load_schedule_csv(const std::string& text, const std::string& file_name);

}  // namespace strata
