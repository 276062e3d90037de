#include "launch/fault_injection.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace strata {

namespace {

[[noreturn]] void bad(const std::string& spec, const std::string& why) {
  throw InputError("STRATA_FAULT='" + spec + "': " + why +
                   " (expected stall:rank=R,step=S,seconds=T; test-only)");
}

double number(const std::string& spec, const std::string& key, const std::string& v) {
  try {
    size_t used = 0;
    const double x = std::stod(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  bad(spec, key + ": expected a number, got '" + v + "'");
}

}  // namespace

StallFault parse_fault(const std::string& spec) {
  const std::string kind = "stall:";
  if (spec.rfind(kind, 0) != 0) bad(spec, "unknown fault kind");
  StallFault f;
  bool has_rank = false, has_step = false, has_seconds = false;
  std::istringstream in(spec.substr(kind.size()));
  std::string item;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) bad(spec, "'" + item + "' is not key=value");
    const std::string key = item.substr(0, eq), v = item.substr(eq + 1);
    const double x = number(spec, key, v);
    if (key == "rank" && x >= 0 && x == static_cast<int>(x)) {
      f.rank = static_cast<int>(x);
      has_rank = true;
    } else if (key == "step" && x >= 1 && x == static_cast<int64_t>(x)) {
      f.step = static_cast<int64_t>(x);
      has_step = true;
    } else if (key == "seconds" && x > 0) {
      f.seconds = x;
      has_seconds = true;
    } else {
      bad(spec, "bad key or value '" + item + "'");
    }
  }
  if (!has_rank || !has_step || !has_seconds) bad(spec, "rank, step and seconds are required");
  return f;
}

std::optional<StallFault> fault_from_env() {
  const char* s = std::getenv("STRATA_FAULT");
  if (!s || !*s) return std::nullopt;
  return parse_fault(s);
}

void inject_stall(const StallFault& f, int rank, int64_t step) {
  if (rank != f.rank || step != f.step) return;
  std::fprintf(stderr, "strata: rank %d: STRATA_FAULT: stalling %.0f s in step %lld\n", rank,
               f.seconds, static_cast<long long>(step));
  std::fflush(stderr);
  std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
}

}  // namespace strata
