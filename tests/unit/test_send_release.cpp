// parallel/send_release.h: where a pipeline send's buffer is released, held against a worked
// 1F1B list and against plain graph reachability over every generated schedule.
#include <gtest/gtest.h>

#include <map>
#include <queue>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "parallel/send_release.h"
#include "schedule_test_util.h"

namespace strata {
namespace {

// 1F1B, pp 2, three micro-batches, as lower_schedule lays it out:
//   rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0F2 0SEND_F2 0RECV_B1 0B1 0RECV_B2 0B2 RG
//   rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 1RECV_F2 1F2 1B2 1SEND_B2 RG
// Rank 0's F0 is received by rank 1 before its SEND_B0, which rank 0 takes at RECV_B0 (4): F0's
// buffer goes after action 4, F1's after RECV_B1 (8), F2's after RECV_B2 (10). Rank 1's SEND_B0
// is taken at rank 0's 4, before its SEND_F2, which rank 1 takes at 8; nothing rank 0 sends after
// its RECV_B1 proves B1 or B2 received: the step's end (13).
TEST(SendRelease, WorkedOneFOneB) {
  const Schedule s = lower_schedule(make_1f1b(2, 3));
  ASSERT_EQ(s.ranks[0].size(), 13u);
  const std::vector<size_t> r0 = send_release_points(s, 0), r1 = send_release_points(s, 1);
  const std::map<size_t, size_t> want0 = {{1, 4}, {3, 8}, {7, 10}};
  const std::map<size_t, size_t> want1 = {{3, 8}, {7, 13}, {11, 13}};
  for (size_t i = 0; i < r0.size(); ++i)
    EXPECT_EQ(r0[i], want0.count(i) ? want0.at(i) : 13u) << format_action(s.ranks[0][i]);
  for (size_t i = 0; i < r1.size(); ++i)
    EXPECT_EQ(r1[i], want1.count(i) ? want1.at(i) : 13u) << format_action(s.ranks[1][i]);
}

using Node = std::pair<int, int>;  // (rank, index)

bool is_send(ActionType t) { return t == ActionType::SEND_F || t == ActionType::SEND_B; }
bool is_recv(ActionType t) { return t == ActionType::RECV_F || t == ActionType::RECV_B; }
std::tuple<int, int, int> message(const Action& a) {  // (backward, receiving stage, mb)
  if (a.type == ActionType::SEND_F) return {0, a.stage + 1, a.micro_batch};
  if (a.type == ActionType::SEND_B) return {1, a.stage - 1, a.micro_batch};
  return {a.type == ActionType::RECV_B ? 1 : 0, a.stage, a.micro_batch};
}

// The reference: every node reachable from `from` along program order and message edges.
std::set<Node> reachable(const Schedule& s, Node from) {
  std::map<std::tuple<int, int, int>, Node> recv_of;
  for (int r = 0; r < s.pp; ++r)
    for (int i = 0; i < static_cast<int>(s.ranks[r].size()); ++i)
      if (is_recv(s.ranks[r][i].type)) recv_of[message(s.ranks[r][i])] = {r, i};
  std::set<Node> seen = {from};
  std::queue<Node> frontier;
  frontier.push(from);
  while (!frontier.empty()) {
    const auto [r, i] = frontier.front();
    frontier.pop();
    std::vector<Node> next;
    if (i + 1 < static_cast<int>(s.ranks[r].size())) next.push_back({r, i + 1});
    if (is_send(s.ranks[r][i].type)) next.push_back(recv_of.at(message(s.ranks[r][i])));
    for (const Node& n : next)
      if (seen.insert(n).second) frontier.push(n);
  }
  return seen;
}

TEST(SendRelease, FirstPointTheReceiveHappenedBeforeInEverySchedule) {
  for (const ScheduleKind kind : test::kAllKinds)
    for (const int pp : {2, 3, 4}) {
      const int m = 2 * pp;
      const Schedule s = lower_schedule(make_schedule(kind, pp, m, test::virtual_stages_for(kind)));
      std::map<std::tuple<int, int, int>, Node> recv_of;
      for (int r = 0; r < pp; ++r)
        for (int i = 0; i < static_cast<int>(s.ranks[r].size()); ++i)
          if (is_recv(s.ranks[r][i].type)) recv_of[message(s.ranks[r][i])] = {r, i};
      int proven = 0;
      for (int r = 0; r < pp; ++r) {
        const auto& acts = s.ranks[r];
        const std::vector<size_t> got = send_release_points(s, r);
        ASSERT_EQ(got.size(), acts.size());
        for (size_t i = 0; i < acts.size(); ++i) {
          size_t want = acts.size();
          if (is_send(acts[i].type)) {
            const std::set<Node> after = reachable(s, recv_of.at(message(acts[i])));
            for (size_t k = i + 1; k < acts.size() && want == acts.size(); ++k)
              if (after.count({r, static_cast<int>(k)})) want = k;
            proven += want < acts.size();
          }
          EXPECT_EQ(got[i], want) << schedule_kind_name(kind) << " pp " << pp << " rank " << r
                                  << " " << format_action(acts[i]);
        }
      }
      EXPECT_GT(proven, 0) << schedule_kind_name(kind) << " pp " << pp;
    }
}

// A receive whose send never comes: no run of the lists reaches the end (the executor would
// hang; validation refuses such a schedule first), so nothing is released before the end.
TEST(SendRelease, UnmatchableListsReleaseAtTheEnd) {
  Schedule s = lower_schedule(make_1f1b(2, 2));
  Action stray;
  stray.type = ActionType::RECV_F;
  stray.stage = 1;
  stray.micro_batch = 7;
  stray.peer = 0;
  s.ranks[1].insert(s.ranks[1].begin(), stray);
  for (int r = 0; r < 2; ++r)
    for (size_t at : send_release_points(s, r)) EXPECT_EQ(at, s.ranks[r].size());
}

}  // namespace
}  // namespace strata
