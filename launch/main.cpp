// strata: the command-line entry point (see launch/cli.cpp).
#include <string>
#include <vector>

#include "launch/cli.h"

int main(int argc, char** argv) {
  return strata::cli_main(std::vector<std::string>(argv, argv + argc));
}
