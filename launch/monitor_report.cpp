#include "launch/monitor_report.h"

#include <charconv>
#include <cstdio>
#include <sstream>

namespace strata {

namespace {

constexpr const char* kStateNames[] = {"starting",   "training",      "waiting",
                                       "evaluating", "checkpointing", "finished"};

std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// One word or the rest of the line; no newlines inside a value (activity texts are ours).
std::string one_line(const std::string& s) {
  std::string out = s.substr(0, 200);
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

template <class T>
bool parse_number(const std::string& s, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    char* end = nullptr;
    out = static_cast<T>(std::strtod(s.c_str(), &end));
    return !s.empty() && end == s.c_str() + s.size();
  } else {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  }
}

}  // namespace

const char* rank_state_name(RankState s) { return kStateNames[static_cast<int>(s)]; }

std::optional<RankState> parse_rank_state(const std::string& s) {
  for (int i = 0; i < static_cast<int>(std::size(kStateNames)); ++i)
    if (s == kStateNames[i]) return static_cast<RankState>(i);
  return std::nullopt;
}

std::string encode_report(const RankReport& r) {
  std::ostringstream os;
  os << "rank " << r.rank << "\nstep " << r.step << "\nstate " << rank_state_name(r.state)
     << "\nactivity " << one_line(r.activity) << "\nsince " << num(r.since) << "\nsent "
     << num(r.sent) << "\nstep_seconds " << num(r.step_seconds) << "\ntokens_per_s "
     << num(r.tokens_per_s) << "\ngemm_flops_per_s " << num(r.gemm_flops_per_s) << "\n";
  for (int c = 0; c < kNumMemCategories; ++c)
    os << "mem " << mem_category_name(static_cast<MemCategory>(c)) << " " << r.mem_current[c] << " "
       << r.mem_peak[c] << "\n";
  if (!r.swap_tier.empty())
    os << "swap " << r.swap_tier << " " << r.swap_used << " " << r.swap_capacity << " "
       << r.swap_written << " " << num(r.swap_bytes_per_s) << "\n";
  for (const auto& [axis, bytes] : r.comm_bytes) os << "comm " << axis << " " << bytes << "\n";
  return os.str();
}

namespace {

bool read_field(RankReport& r, const std::string& key, std::istringstream& rest,
                const std::string& value) {
  if (key == "rank") return parse_number(value, r.rank) && r.rank >= 0;
  if (key == "step") return parse_number(value, r.step);
  if (key == "state") {
    const auto s = parse_rank_state(value);
    if (s) r.state = *s;
    return s.has_value();
  }
  if (key == "activity") return r.activity = value, true;
  if (key == "since") return parse_number(value, r.since);
  if (key == "sent") return parse_number(value, r.sent);
  if (key == "step_seconds") return parse_number(value, r.step_seconds);
  if (key == "tokens_per_s") return parse_number(value, r.tokens_per_s);
  if (key == "gemm_flops_per_s") return parse_number(value, r.gemm_flops_per_s);
  if (key == "mem") {
    std::string name;
    int64_t cur = 0, peak = 0;
    if (!(rest >> name >> cur >> peak)) return false;
    for (int c = 0; c < kNumMemCategories; ++c)
      if (name == mem_category_name(static_cast<MemCategory>(c)))
        r.mem_current[c] = cur, r.mem_peak[c] = peak;
    return true;
  }
  if (key == "swap")
    return static_cast<bool>(rest >> r.swap_tier >> r.swap_used >> r.swap_capacity >>
                             r.swap_written >> r.swap_bytes_per_s);
  if (key == "comm") {
    std::string axis;
    int64_t bytes = 0;
    if (!(rest >> axis >> bytes)) return false;
    r.comm_bytes[axis] = bytes;
    return true;
  }
  return true;  // a field of a newer writer
}

}  // namespace

std::optional<RankReport> decode_report(const std::string& text) {
  RankReport r;
  bool has_rank = false, has_state = false;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const size_t sp = line.find(' ');
    const std::string key = line.substr(0, sp);
    const std::string value = sp == std::string::npos ? "" : line.substr(sp + 1);
    std::istringstream rest(value);
    if (!read_field(r, key, rest, value)) return std::nullopt;
    has_rank |= key == "rank";
    has_state |= key == "state";
  }
  if (!has_rank || !has_state) return std::nullopt;
  return r;
}

}  // namespace strata
