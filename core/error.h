#pragma once
// Errors that reach the user. Every user-facing failure is a StrataError carrying the exit code
// the CLI returns: 2 for bad input (config, flags, data, checkpoints), 1 for runtime failures.
#include <stdexcept>
#include <string>

namespace strata {

enum class ExitCode : int { ok = 0, runtime = 1, bad_input = 2 };

class StrataError : public std::runtime_error {
 public:
  StrataError(const std::string& what, ExitCode code = ExitCode::runtime)
      : std::runtime_error(what), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad user input (YAML, CLI flags, token files, checkpoints): exit code 2.
class InputError : public StrataError {
 public:
  explicit InputError(const std::string& what) : StrataError(what, ExitCode::bad_input) {}
};

}  // namespace strata

// Internal invariant check: a failure is a bug in Strata, not bad input.
#define STRATA_CHECK(cond, msg)                                                               \
  do {                                                                                        \
    if (!(cond))                                                                              \
      throw ::strata::StrataError(std::string("internal check failed: ") + #cond + " (" +     \
                                  __FILE__ + ":" + std::to_string(__LINE__) + "): " + (msg)); \
  } while (0)
