#include "launch/monitor_render.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <sstream>

#include "core/trace.h"

namespace strata {

namespace {

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// JSON has no NaN: null instead.
std::string jnum(double v) { return std::isfinite(v) ? num(v) : "null"; }

// Prometheus label values: backslash, quote and newline escaped.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Exposition {
 public:
  void family(const std::string& name, const char* type, const std::string& help) {
    name_ = name;
    os_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(double v, const std::string& labels = "") {
    os_ << name_ << (labels.empty() ? "" : "{" + labels + "}") << " " << num(v) << "\n";
  }
  std::string str() const { return os_.str(); }

 private:
  std::ostringstream os_;
  std::string name_;
};

std::string rank_label(int r) { return "rank=\"" + std::to_string(r) + "\""; }

void run_families(Exposition& e, const BoardSnapshot& s) {
  const StepPoint last = s.history.empty() ? StepPoint{} : s.history.back();
  e.family("strata_step", "gauge", "Optimizer steps completed.");
  e.sample(static_cast<double>(last.step));
  e.family("strata_train_steps", "gauge", "Steps the run trains to (train.steps).");
  e.sample(static_cast<double>(s.info.total_steps));
  e.family("strata_world_size", "gauge", "Ranks (processes) of the job.");
  e.sample(s.info.world);
  e.family("strata_elapsed_seconds", "gauge", "Seconds since the run started.");
  e.sample(s.now - s.info.started);
  e.family("strata_eta_seconds", "gauge", "Estimated seconds to the last step.");
  e.sample(s.eta);
  e.family("strata_loss", "gauge", "Training loss of the last step.");
  e.sample(last.loss);
  for (auto it = s.history.rbegin(); it != s.history.rend(); ++it)
    if (std::isfinite(it->val_loss)) {
      e.family("strata_val_loss", "gauge", "Validation loss of the last evaluation.");
      e.sample(it->val_loss);
      break;
    }
  e.family("strata_learning_rate", "gauge", "Learning rate of the last step.");
  e.sample(last.lr);
  e.family("strata_grad_norm", "gauge", "Global gradient norm (before clipping) of the last step.");
  e.sample(last.grad_norm);
  e.family("strata_step_duration_seconds", "gauge", "Wall time of the last step.");
  e.sample(last.step_seconds);
  e.family("strata_tokens_per_second", "gauge", "Training tokens per second of the last step.");
  e.sample(last.tokens_per_s);
}

// One family with a sample per rank of `value`.
void per_rank(Exposition& e, const BoardSnapshot& s, const std::string& name, const char* type,
              const std::string& help, const std::function<double(const RankView&)>& value) {
  e.family(name, type, help);
  for (const RankView& v : s.ranks) e.sample(value(v), rank_label(v.report.rank));
}

void rank_families(Exposition& e, const BoardSnapshot& s) {
  per_rank(e, s, "strata_gemm_flops_per_second", "gauge",
           "GEMM floating-point operations per second of the rank's last step.",
           [](const RankView& v) { return v.report.gemm_flops_per_s; });
  per_rank(e, s, "strata_heartbeat_age_seconds", "gauge",
           "Seconds since the rank's last heartbeat reached rank 0 (NaN: none yet).",
           [&](const RankView& v) { return v.received > 0 ? s.now - v.received : NAN; });
  per_rank(e, s, "strata_rank_stalled", "gauge",
           "1 when the rank has been silent longer than the stall threshold.",
           [&](const RankView& v) { return shown_state(v, s.now, s.stall_after) == "stalled"; });
  e.family("strata_memory_bytes", "gauge", "Tracked memory of the rank by category, now.");
  for (const RankView& v : s.ranks)
    for (int c = 0; c < kNumMemCategories; ++c)
      e.sample(static_cast<double>(v.report.mem_current[c]),
               rank_label(v.report.rank) + ",category=\"" +
                   mem_category_name(static_cast<MemCategory>(c)) + "\"");
  e.family("strata_memory_peak_bytes", "gauge",
           "Peak tracked memory of the rank by category over its last step.");
  for (const RankView& v : s.ranks)
    for (int c = 0; c < kNumMemCategories; ++c)
      e.sample(static_cast<double>(v.report.mem_peak[c]),
               rank_label(v.report.rank) + ",category=\"" +
                   mem_category_name(static_cast<MemCategory>(c)) + "\"");
}

void swap_and_comm_families(Exposition& e, const BoardSnapshot& s) {
  auto tier = [](const RankView& v) {
    return rank_label(v.report.rank) + ",tier=\"" + label(v.report.swap_tier) + "\"";
  };
  bool any_swap = false;
  for (const RankView& v : s.ranks) any_swap |= !v.report.swap_tier.empty();
  if (any_swap) {
    e.family("strata_swap_tier_bytes", "gauge", "Bytes the rank's swap tier holds now.");
    for (const RankView& v : s.ranks)
      if (!v.report.swap_tier.empty()) e.sample(static_cast<double>(v.report.swap_used), tier(v));
    e.family("strata_swap_tier_capacity_bytes", "gauge", "Capacity of the rank's swap tier.");
    for (const RankView& v : s.ranks)
      if (!v.report.swap_tier.empty())
        e.sample(static_cast<double>(v.report.swap_capacity), tier(v));
    e.family("strata_swap_written_bytes_total", "counter",
             "Activation bytes written to the swap tier since the start.");
    for (const RankView& v : s.ranks)
      if (!v.report.swap_tier.empty())
        e.sample(static_cast<double>(v.report.swap_written), tier(v));
    e.family("strata_swap_write_bytes_per_second", "gauge",
             "Swap bytes written in the rank's last step per second of it.");
    for (const RankView& v : s.ranks)
      if (!v.report.swap_tier.empty()) e.sample(v.report.swap_bytes_per_s, tier(v));
  }
  e.family("strata_comm_bytes_total", "counter",
           "Bytes moved by the rank's collectives and transfers per mesh axis (comm_stats.h).");
  for (const RankView& v : s.ranks)
    for (const auto& [axis, bytes] : v.report.comm_bytes)
      e.sample(static_cast<double>(bytes),
               rank_label(v.report.rank) + ",axis=\"" + label(axis) + "\"");
}

}  // namespace

std::string prometheus_text(const BoardSnapshot& s) {
  Exposition e;
  run_families(e, s);
  rank_families(e, s);
  swap_and_comm_families(e, s);
  return e.str();
}

namespace {

std::string history_json(const std::vector<StepPoint>& h) {
  std::ostringstream os;
  auto column = [&](const char* name, const std::function<double(const StepPoint&)>& f) {
    os << json_quote(name) << ":[";
    for (size_t i = 0; i < h.size(); ++i) os << (i ? "," : "") << jnum(f(h[i]));
    os << "]";
  };
  os << "{";
  column("step", [](const StepPoint& p) { return static_cast<double>(p.step); });
  os << ",";
  column("loss", [](const StepPoint& p) { return p.loss; });
  os << ",";
  column("val_loss", [](const StepPoint& p) { return p.val_loss; });
  os << ",";
  column("tokens_per_s", [](const StepPoint& p) { return p.tokens_per_s; });
  os << ",";
  column("step_seconds", [](const StepPoint& p) { return p.step_seconds; });
  os << "}";
  return os.str();
}

std::string rank_json(const RankView& v, const BoardSnapshot& s) {
  const RankReport& r = v.report;
  std::ostringstream os;
  os << "{\"rank\":" << r.rank << ",\"state\":" << json_quote(shown_state(v, s.now, s.stall_after))
     << ",\"reported_state\":" << json_quote(rank_state_name(r.state))
     << ",\"activity\":" << json_quote(r.activity) << ",\"step\":" << r.step
     << ",\"last_heartbeat\":" << (v.received > 0 ? jnum(v.received) : "null")
     << ",\"heartbeat_age_s\":" << (v.received > 0 ? jnum(s.now - v.received) : "null")
     << ",\"activity_s\":" << (r.since > 0 ? jnum(r.sent - r.since) : "null")
     << ",\"gemm_flops_per_s\":" << jnum(r.gemm_flops_per_s) << ",\"memory\":{";
  for (int c = 0; c < kNumMemCategories; ++c)
    os << (c ? "," : "") << json_quote(mem_category_name(static_cast<MemCategory>(c))) << ":"
       << r.mem_current[c];
  os << "},\"memory_peak\":{";
  for (int c = 0; c < kNumMemCategories; ++c)
    os << (c ? "," : "") << json_quote(mem_category_name(static_cast<MemCategory>(c))) << ":"
       << r.mem_peak[c];
  os << "},\"comm_bytes\":{";
  bool first = true;
  for (const auto& [axis, bytes] : r.comm_bytes) {
    os << (first ? "" : ",") << json_quote(axis) << ":" << bytes;
    first = false;
  }
  os << "}";
  if (!r.swap_tier.empty())
    os << ",\"swap\":{\"tier\":" << json_quote(r.swap_tier) << ",\"used\":" << r.swap_used
       << ",\"capacity\":" << r.swap_capacity << ",\"written\":" << r.swap_written
       << ",\"bytes_per_s\":" << jnum(r.swap_bytes_per_s) << "}";
  os << "}";
  return os.str();
}

}  // namespace

std::string status_json(const BoardSnapshot& s) {
  const StepPoint last = s.history.empty() ? StepPoint{} : s.history.back();
  std::ostringstream os;
  os << "{\"job\":" << json_quote(s.info.job) << ",\"world\":" << s.info.world
     << ",\"layout\":{\"dp\":" << s.info.dp << ",\"sp\":" << s.info.sp << ",\"pp\":" << s.info.pp
     << "},\"parameters\":" << s.info.parameters << ",\"step\":" << last.step
     << ",\"total_steps\":" << s.info.total_steps << ",\"started\":" << jnum(s.info.started)
     << ",\"now\":" << jnum(s.now) << ",\"elapsed_s\":" << jnum(s.now - s.info.started)
     << ",\"eta_s\":" << jnum(s.eta) << ",\"stall_after_s\":" << jnum(s.stall_after)
     << ",\"last\":{\"loss\":" << jnum(s.history.empty() ? NAN : last.loss)
     << ",\"lr\":" << jnum(last.lr) << ",\"grad_norm\":" << jnum(last.grad_norm)
     << ",\"step_seconds\":" << jnum(last.step_seconds)
     << ",\"tokens_per_s\":" << jnum(last.tokens_per_s)
     << ",\"gemm_flops_per_s\":" << jnum(last.gemm_flops_per_s)
     << "},\"history\":" << history_json(s.history) << ",\"ranks\":[";
  for (size_t i = 0; i < s.ranks.size(); ++i) os << (i ? "," : "") << rank_json(s.ranks[i], s);
  os << "]}";
  return os.str();
}

}  // namespace strata
