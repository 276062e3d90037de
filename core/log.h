#pragma once
// Minimal logging: rank-prefixed lines to stderr (info) so stdout stays machine-readable.
#include <string>

namespace strata {

void set_log_rank(int rank, int world);
void log_info(const std::string& msg);  // printed by rank 0 only
void log_warn(const std::string& msg);  // printed by every rank, prefixed with it
void log_all(const std::string& msg);   // every rank

}  // namespace strata
