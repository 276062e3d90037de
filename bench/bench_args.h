#pragma once
// The benchmarks' command-line numbers, checked in one place: a value that is not a whole
// number exits 2 with a message naming the program and the flag (std::stoll would throw and,
// uncaught, end the process with SIGABRT).
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>

namespace strata {

inline int64_t bench_number(const char* program, const std::string& flag, const std::string& v) {
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size()) {
    std::fprintf(stderr, "%s: %s: expected a whole number, got '%s'\n", program, flag.c_str(),
                 v.c_str());
    std::exit(2);
  }
  return n;
}

}  // namespace strata
