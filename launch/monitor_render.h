#pragma once
// The run monitor's documents, rendered from a snapshot (launch/monitor_board.h):
//   /metrics  Prometheus text exposition format 0.0.4 (every family with HELP and TYPE, base
//             units, counters ending in _total), checked by `promtool check metrics` in the suite;
//   /status   one JSON object: the run, its ETA, the step history and every rank's state.
#include <string>

#include "launch/monitor_board.h"

namespace strata {

std::string prometheus_text(const BoardSnapshot& s);
std::string status_json(const BoardSnapshot& s);

}  // namespace strata
