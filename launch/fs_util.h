#pragma once
// Small file helpers for the launcher.
#include <string>

namespace strata {

// The whole file; InputError naming it when it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace strata
