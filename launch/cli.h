#pragma once
// The `strata` command line: train, eval, export, prepare-data. Each returns the process exit
// code: 0 ok, 1 runtime failure, 2 bad input (flags, config, data, checkpoint).
#include <string>
#include <vector>

namespace strata {

int cli_main(const std::vector<std::string>& args);

}  // namespace strata
