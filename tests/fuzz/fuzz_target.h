#pragma once
// What every fuzz target shares: how a parser's answer to arbitrary bytes is judged.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "core/error.h"

namespace strata::fuzz {

// A finding that is not a crash by itself (a broken promise of the parser): report and abort,
// so libFuzzer saves the input like any other crash.
[[noreturn]] inline void finding(const char* what, const char* detail = "") {
  std::fprintf(stderr, "FUZZ FINDING: %s %s\n", what, detail);
  std::abort();
}

inline void require(bool cond, const char* what) {
  if (!cond) finding(what);
}

// Runs one parse of fuzz input. InputError is the parsers' documented answer to bad input;
// any other exception (an internal STRATA_CHECK, std::out_of_range, yaml-cpp's own...) means a
// malformed file got past the checks, which is a finding.
template <class Parse>
void parse_or_input_error(Parse&& parse) {
  try {
    parse();
  } catch (const InputError&) {
  } catch (const std::exception& e) {
    finding("exception other than InputError:", e.what());
  }
}

}  // namespace strata::fuzz
