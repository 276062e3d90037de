#include "parallel/schedule_sim.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

#include "parallel/schedule_check.h"

namespace strata {
namespace {

using ActionKey = std::tuple<ActionType, int, int>;  // (type, stage, micro_batch)

struct Dependency {
  ActionKey key;
  double delay = 0;  // added to the dependency's finish time
};

// The per-stage entry when given, else the scalar.
double stage_cost(const std::vector<double>& per_stage, double scalar, int stage) {
  return per_stage.empty() ? scalar : per_stage[static_cast<size_t>(stage)];
}

// A per-stage vector of the wrong length is a caller's bug, caught before it indexes past one.
void check_stage_costs(const Schedule& schedule, const SimCosts& costs) {
  for (const std::vector<double>* v : {&costs.stage_forward, &costs.stage_backward,
                                       &costs.stage_backward_input, &costs.stage_backward_weight})
    STRATA_CHECK(v->empty() || v->size() == static_cast<size_t>(schedule.stages),
                 "per-stage simulation costs need one entry per stage: got " +
                     std::to_string(v->size()) + " for " + std::to_string(schedule.stages) +
                     " stages");
}

class Simulator {
 public:
  Simulator(const Schedule& schedule, const SimCosts& costs)
      : s_(schedule), costs_(costs), lowered_(is_lowered(schedule)) {
    for (const auto& actions : s_.ranks)
      for (const Action& a : actions) present_.insert({a.type, a.stage, a.micro_batch});
  }

  SimResult run() {
    SimResult result;
    result.start.resize(s_.pp);
    result.finish.resize(s_.pp);
    std::vector<double> free_at(s_.pp, 0);
    for (bool progress = true; progress;) {
      progress = false;
      for (int rank = 0; rank < s_.pp; ++rank)
        while (advance(rank, free_at, result)) progress = true;
    }
    check_finished(result);
    summarise(result);
    return result;
  }

 private:
  // The backward of (stage, mb) that produces the gradient for stage-1: B or I.
  ActionKey backward_input(int stage, int mb) const {
    ActionKey b{ActionType::B, stage, mb};
    return present_.count(b) ? b : ActionKey{ActionType::I, stage, mb};
  }
  // A vocabulary pass of `mb` when the schedule has it: the data dependencies on the passes.
  void add_if_present(std::vector<Dependency>& deps, ActionType type, int stage, int mb) const {
    if (present_.count({type, stage, mb})) deps.push_back({{type, stage, mb}});
  }
  bool is_collective(const Action& a) const { return is_vocab_collective(a.type); }

  // Unlowered schedules (and same-rank neighbours) depend on the producer directly; lowered
  // cross-rank ones through the receive that precedes the consumer on its rank.
  bool direct(int from_stage, int to_stage) const {
    return !lowered_ || s_.rank_of_stage(from_stage) == s_.rank_of_stage(to_stage);
  }
  double hop(int from_stage, int to_stage) const {
    return s_.rank_of_stage(from_stage) == s_.rank_of_stage(to_stage) ? 0 : costs_.latency;
  }

  std::vector<Dependency> dependencies(const Action& a, int rank) const {
    std::vector<Dependency> deps;
    const int s = a.stage, mb = a.micro_batch;
    switch (a.type) {
      case ActionType::F:
        if (s > 0 && direct(s - 1, s)) deps.push_back({{ActionType::F, s - 1, mb}, hop(s - 1, s)});
        if (s == 0) add_if_present(deps, ActionType::EMBED_F, 0, mb);
        break;
      case ActionType::B:
      case ActionType::I:
        deps.push_back({{ActionType::F, s, mb}});
        if (s + 1 < s_.stages && direct(s + 1, s))
          deps.push_back({backward_input(s + 1, mb), hop(s + 1, s)});
        if (s + 1 == s_.stages) add_if_present(deps, ActionType::S, s, mb);
        break;
      case ActionType::S:  // every rank reads the broadcast output of the last stage
        deps.push_back({{ActionType::F, s, mb}});
        break;
      case ActionType::T:
        deps.push_back({{ActionType::S, s, mb}});
        break;
      case ActionType::EMBED_B:
        // The broadcast's root reads stage 0's input gradient; the others only post their part.
        if (s_.rank_of_stage(0) == rank) deps.push_back({backward_input(0, mb)});
        break;
      case ActionType::W:
        deps.push_back({{ActionType::I, s, mb}});
        break;
      case ActionType::SEND_F:
        deps.push_back({{ActionType::F, s, mb}});
        break;
      case ActionType::SEND_B:
        deps.push_back({backward_input(s, mb)});
        break;
      case ActionType::RECV_F:
        deps.push_back({{ActionType::SEND_F, s - 1, mb}, costs_.latency});
        break;
      case ActionType::RECV_B:
        deps.push_back({{ActionType::SEND_B, s + 1, mb}, costs_.latency});
        break;
      default:
        break;  // REDUCE_GRAD: its place on the rank (after the last backward) suffices;
                // EMBED_F: nothing before it
    }
    return deps;
  }

  // The rank's next action, or null when its list is done.
  const Action* next_of(int rank, const SimResult& result) const {
    size_t index = result.start[rank].size();
    return index == s_.ranks[rank].size() ? nullptr : &s_.ranks[rank][index];
  }
  // The ranks that have not yet run their part of the collective `key` (those its result waits
  // for).
  std::vector<int> missing_parts(const ActionKey& key, const SimResult& result) const {
    std::vector<int> missing;
    for (int rank = 0; rank < s_.pp; ++rank) {
      const auto& list = s_.ranks[rank];
      const size_t done = result.start[rank].size();
      const bool ran = std::any_of(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(done),
                                   [&](const Action& a) {
                                     return ActionKey{a.type, a.stage, a.micro_batch} == key;
                                   });
      if (!ran) missing.push_back(rank);
    }
    return missing;
  }

  // Runs the rank's next action if its dependencies are done; false when done or blocked. A
  // collective's part runs like compute; its result is there once every rank's part has ended.
  bool advance(int rank, std::vector<double>& free_at, SimResult& result) {
    const Action* a = next_of(rank, result);
    if (!a) return false;
    double ready = free_at[rank];
    for (const Dependency& dep : dependencies(*a, rank)) {
      auto done = finished_.find(dep.key);
      if (done == finished_.end()) return false;
      ready = std::max(ready, done->second + dep.delay);
    }
    const double end = ready + action_cost(*a, costs_);
    free_at[rank] = end;
    result.start[rank].push_back(ready);
    result.finish[rank].push_back(end);
    const ActionKey key{a->type, a->stage, a->micro_batch};
    if (is_collective(*a)) {
      Parts& p = parts_[key];
      p.end = std::max(p.end, end);
      if (++p.count == s_.pp) finished_[key] = p.end;
    } else if (a->type != ActionType::T) {
      // T is on every rank under one key and nothing waits for it: only the ranks' lists matter.
      finished_[key] = end;
    }
    return true;
  }

  // The first unfinished dependency of a stuck rank's next action.
  ActionKey blocker(int rank, size_t index) const {
    for (const Dependency& dep : dependencies(s_.ranks[rank][index], rank))
      if (!finished_.count(dep.key)) return dep.key;
    STRATA_CHECK(false, "a stuck rank without an unfinished dependency");
  }

  void check_finished(const SimResult& result) const {
    std::map<int, int> waits_on;  // stuck rank -> rank of what it waits for
    std::string stuck;
    for (int rank = 0; rank < s_.pp; ++rank) {
      size_t index = result.start[rank].size();
      if (index == s_.ranks[rank].size()) continue;
      const Action& at = s_.ranks[rank][index];
      stuck += (stuck.empty() ? "" : "; ") + std::string("rank ") + std::to_string(rank) +
               " waits at action #" + std::to_string(index) + " (" + format_action(at) + ") for ";
      ActionKey key = blocker(rank, index);
      Action wanted{std::get<0>(key), std::get<1>(key), std::get<2>(key)};
      if (is_vocab_collective(wanted.type)) {
        const std::vector<int> missing = missing_parts(key, result);
        waits_on[rank] = missing.front();
        std::string ranks;
        for (int r : missing) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
        stuck += "the collective " + format_action(wanted) + " of " +
                 (missing.size() == 1 ? "rank " : "ranks ") + ranks;
        continue;
      }
      int owner = s_.rank_of_stage(wanted.stage);
      waits_on[rank] = owner;
      stuck += format_action(wanted) + " on rank " + std::to_string(owner);
    }
    if (waits_on.empty()) return;
    int first = waits_on.begin()->first;
    throw ScheduleRuleError("pipeline schedule deadlocks (no rank can make progress): " + stuck +
                                "; cycle: " + wait_cycle(waits_on),
                            first, static_cast<int>(result.start[first].size()));
  }

  // Follows "waits on" from the lowest stuck rank until a rank repeats: the cycle.
  static std::string wait_cycle(const std::map<int, int>& waits_on) {
    std::vector<int> path{waits_on.begin()->first};
    for (;;) {
      auto next = waits_on.find(path.back());
      if (next == waits_on.end()) break;  // waits on a finished rank: cannot happen once valid
      auto seen = std::find(path.begin(), path.end(), next->second) - path.begin();
      bool repeats = seen < static_cast<std::ptrdiff_t>(path.size());
      path.push_back(next->second);
      if (repeats) {
        path.erase(path.begin(), path.begin() + seen);
        break;
      }
    }
    std::string text;
    for (int rank : path) text += (text.empty() ? "rank " : " -> rank ") + std::to_string(rank);
    return text;
  }

  void summarise(SimResult& result) const {
    result.busy.assign(s_.pp, 0);
    result.peak_in_flight.assign(s_.pp, 0);
    double total_busy = 0;
    for (int rank = 0; rank < s_.pp; ++rank) {
      // (time, +1 at an F's start / -1 at the last backward's finish); releases sort first.
      std::vector<std::pair<double, int>> events;
      for (size_t i = 0; i < s_.ranks[rank].size(); ++i) {
        const Action& a = s_.ranks[rank][i];
        result.makespan = std::max(result.makespan, result.finish[rank][i]);
        if (is_compute(a.type) || is_vocab(a.type))
          result.busy[rank] += result.finish[rank][i] - result.start[rank][i];
        if (a.type == ActionType::F) events.push_back({result.start[rank][i], +1});
        if (a.type == ActionType::B || a.type == ActionType::W)
          events.push_back({result.finish[rank][i], -1});
      }
      std::sort(events.begin(), events.end());
      int in_flight = 0;
      for (const auto& [time, delta] : events) {
        in_flight += delta;
        result.peak_in_flight[rank] = std::max(result.peak_in_flight[rank], in_flight);
      }
      total_busy += result.busy[rank];
    }
    result.bubble_fraction = result.makespan > 0 ? 1 - total_busy / (s_.pp * result.makespan) : 0;
  }

  const Schedule& s_;
  const SimCosts costs_;
  const bool lowered_;
  std::set<ActionKey> present_;
  std::map<ActionKey, double> finished_;
  struct Parts {  // a collective's parts run so far
    int count = 0;
    double end = 0;
  };
  std::map<ActionKey, Parts> parts_;
};

std::string format_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

std::string pad(const std::string& text, size_t width) {
  return text + std::string(width > text.size() ? width - text.size() : 0, ' ');
}

}  // namespace

double action_cost(const Action& a, const SimCosts& costs) {
  switch (a.type) {
    case ActionType::F:
      return stage_cost(costs.stage_forward, costs.forward, a.stage);
    case ActionType::B:
      return stage_cost(costs.stage_backward, costs.backward, a.stage);
    case ActionType::I:
      return stage_cost(costs.stage_backward_input, costs.backward_input, a.stage);
    case ActionType::W:
      return stage_cost(costs.stage_backward_weight, costs.backward_weight, a.stage);
    case ActionType::SEND_F:
    case ActionType::SEND_B:
      return costs.send;
    case ActionType::RECV_F:
    case ActionType::RECV_B:
      return costs.recv;
    case ActionType::S:
      return costs.vocab_s;
    case ActionType::T:
      return costs.vocab_t;
    case ActionType::EMBED_F:
      return costs.embed_f;
    case ActionType::EMBED_B:
      return costs.embed_b;
    case ActionType::REDUCE_GRAD:
      break;
  }
  return costs.reduce_grad;
}

SimResult simulate_schedule(const Schedule& schedule, const SimCosts& costs) {
  validate_schedule(schedule);
  check_stage_costs(schedule, costs);
  return Simulator(schedule, costs).run();
}

std::string format_schedule_table(const Schedule& schedule, const SimResult& result) {
  // cells[time][rank]: the actions of that rank starting at that time, in list order.
  std::map<double, std::vector<std::string>> cells;
  for (int rank = 0; rank < schedule.pp; ++rank)
    for (size_t i = 0; i < schedule.ranks[rank].size(); ++i) {
      std::vector<std::string>& row = cells[result.start[rank][i]];
      row.resize(schedule.pp);
      if (!row[rank].empty()) row[rank] += ' ';
      row[rank] += format_action(schedule.ranks[rank][i]);
    }
  size_t time_width = 4, width = 6;
  for (const auto& [time, row] : cells) {
    time_width = std::max(time_width, format_number(time).size());
    for (const std::string& cell : row) width = std::max(width, cell.size());
  }
  std::string table = pad("time", time_width);
  for (int rank = 0; rank < schedule.pp; ++rank)
    table += " | " + pad("rank " + std::to_string(rank), width);
  table += "\n";
  for (const auto& [time, row] : cells) {
    table += pad(format_number(time), time_width);
    for (const std::string& cell : row) table += " | " + pad(cell, width);
    table += "\n";
  }
  char summary[96];
  std::snprintf(summary, sizeof summary, "step time %s, bubble fraction %.4f (%.1f%%)\n",
                format_number(result.makespan).c_str(), result.bubble_fraction,
                100 * result.bubble_fraction);
  table += summary;
  for (int rank = 0; rank < schedule.pp; ++rank)
    table += "rank " + std::to_string(rank) + ": busy " + format_number(result.busy[rank]) +
             ", peak in-flight micro-batches " + std::to_string(result.peak_in_flight[rank]) + "\n";
  return table;
}

}  // namespace strata
