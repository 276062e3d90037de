#include "parallel/send_release.h"

#include <map>
#include <tuple>

namespace strata {

namespace {

using MessageKey = std::tuple<int, int, int>;  // (backward, receiving stage, micro-batch)

MessageKey key_of_send(const Action& a) {
  const bool bwd = a.type == ActionType::SEND_B;
  return {bwd ? 1 : 0, bwd ? a.stage - 1 : a.stage + 1, a.micro_batch};
}
MessageKey key_of_recv(const Action& a) {
  return {a.type == ActionType::RECV_B ? 1 : 0, a.stage, a.micro_batch};
}
bool is_send(ActionType t) { return t == ActionType::SEND_F || t == ActionType::SEND_B; }
bool is_recv(ActionType t) { return t == ActionType::RECV_F || t == ActionType::RECV_B; }

// Vector clocks over every rank's list: clock[r][i][q] is the last index of rank q's list known
// to have happened before rank r's action i completed (-1: none), through the message chains.
// Each rank runs its list in order; a RECV completes once its SEND has been posted. Empty when
// the lists cannot be run to the end that way.
using Clocks = std::vector<std::vector<std::vector<int>>>;
Clocks vector_clocks(const Schedule& s) {
  const size_t P = s.ranks.size();
  Clocks clock(P);
  std::vector<size_t> next(P, 0);
  std::vector<int> known(P, -1);
  std::map<MessageKey, std::vector<int>> posted;  // a SEND's clock, until its RECV takes it
  std::vector<std::vector<int>> now(P, known);
  bool moved = true;
  while (moved) {
    moved = false;
    for (size_t r = 0; r < P; ++r) {
      const auto& acts = s.ranks[r];
      while (next[r] < acts.size()) {
        const Action& a = acts[next[r]];
        if (is_recv(a.type)) {
          auto it = posted.find(key_of_recv(a));
          if (it == posted.end()) break;  // its sender has not got there yet
          for (size_t q = 0; q < P; ++q) now[r][q] = std::max(now[r][q], it->second[q]);
          posted.erase(it);
        }
        now[r][r] = static_cast<int>(next[r]);
        if (is_send(a.type)) posted[key_of_send(a)] = now[r];
        clock[r].push_back(now[r]);
        ++next[r];
        moved = true;
      }
    }
  }
  for (size_t r = 0; r < P; ++r)
    if (next[r] != s.ranks[r].size()) return {};
  return clock;
}

}  // namespace

std::vector<size_t> send_release_points(const Schedule& schedule, int rank) {
  const auto& acts = schedule.ranks.at(static_cast<size_t>(rank));
  std::vector<size_t> release(acts.size(), acts.size());
  const Clocks clock = vector_clocks(schedule);
  if (clock.empty()) return release;
  // Where each message is received: (receiving rank, index of its RECV).
  std::map<MessageKey, std::pair<int, int>> received;
  for (size_t q = 0; q < schedule.ranks.size(); ++q)
    for (size_t j = 0; j < schedule.ranks[q].size(); ++j)
      if (is_recv(schedule.ranks[q][j].type))
        received[key_of_recv(schedule.ranks[q][j])] = {static_cast<int>(q), static_cast<int>(j)};
  const auto& mine = clock[static_cast<size_t>(rank)];
  for (size_t i = 0; i < acts.size(); ++i) {
    if (!is_send(acts[i].type)) continue;
    auto it = received.find(key_of_send(acts[i]));
    if (it == received.end()) continue;
    const auto [peer, at] = it->second;
    for (size_t k = i + 1; k < acts.size(); ++k)
      if (mine[k][static_cast<size_t>(peer)] >= at) {
        release[i] = k;
        break;
      }
  }
  return release;
}

}  // namespace strata
