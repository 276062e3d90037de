#pragma once
// The benchmarks' command-line numbers, checked in one place: a value that is not a whole
// number exits 2 with a message naming the program and the flag (std::stoll would throw and,
// uncaught, end the process with SIGABRT); and their main, which no error leaves by a signal.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>

#include "core/error.h"

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

// A benchmark's main: runs fn(), and an error that escapes it is a message naming the program and
// its exit code (a StrataError's own, 2 for bad input; 2 for any other exception, std::bad_alloc
// say) rather than std::terminate's SIGABRT.
template <class Fn>
int bench_main(const char* program, Fn&& fn) {
  try {
    return fn();
  } catch (const StrataError& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  }
}

}  // namespace strata
