#include "launch/monitor_keys.h"

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <set>
#include <string>

namespace strata {

namespace {

std::optional<KeyProblem> trace_steps_problem(const JobConfig& cfg) {
  const std::vector<int64_t>& steps = cfg.log.trace_steps;
  if (steps.size() > kMaxTraceSteps)
    return KeyProblem{"log.trace_steps", "expected at most " + std::to_string(kMaxTraceSteps) +
                                             " steps, got " + std::to_string(steps.size())};
  std::set<int64_t> seen;
  for (int64_t s : steps) {
    if (s < 1 || s > cfg.train.steps)
      return KeyProblem{"log.trace_steps", "step " + std::to_string(s) +
                                               " is outside [1, train.steps = " +
                                               std::to_string(cfg.train.steps) + "]"};
    if (!seen.insert(s).second)
      return KeyProblem{"log.trace_steps", "step " + std::to_string(s) + " is listed twice"};
  }
  return std::nullopt;
}

}  // namespace

std::optional<KeyProblem> monitor_key_problem(const JobConfig& cfg) {
  if (cfg.log.progress_s < 0 || cfg.log.progress_s > 86400)
    return KeyProblem{"log.progress_s", "expected a value in [0, 86400] seconds, got " +
                                            std::to_string(cfg.log.progress_s)};
  if (auto p = trace_steps_problem(cfg)) return p;
  if (cfg.monitor.port < 0 || cfg.monitor.port > 65535)
    return KeyProblem{"monitor.port", "expected a TCP port in [0, 65535] (0 = off), got " +
                                          std::to_string(cfg.monitor.port)};
  boost::system::error_code ec;
  boost::asio::ip::make_address(cfg.monitor.bind, ec);
  if (ec)
    return KeyProblem{"monitor.bind",
                      "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got '" +
                          cfg.monitor.bind.substr(0, 80) + "'"};
  return std::nullopt;
}

}  // namespace strata
