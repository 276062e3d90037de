// The pipeline schedule validator and the simulator's deadlock proof on hand-broken schedules:
// each is refused with the rule it breaks and the rank and action where it breaks it.
#include <gtest/gtest.h>

#include <algorithm>

#include "input_error_util.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_sim.h"

namespace strata {
namespace {

using test::expect_input_error;

Action act(ActionType type, int stage, int mb, int peer = kNoPeer) {
  return {type, stage, mb, peer};
}

// Removes the first action equal to `a` from `actions`; the test fails if there is none.
void erase(std::vector<Action>& actions, const Action& a) {
  auto it = std::find(actions.begin(), actions.end(), a);
  ASSERT_NE(it, actions.end()) << format_action(a);
  actions.erase(it);
}

void expect_rule(const Schedule& s, const std::string& needle) {
  expect_input_error([&] { simulate_schedule(s); }, needle);
}

TEST(ScheduleCheck, CycleAcrossRanksIsADeadlockNamingTheRanks) {
  // rank 0 runs micro-batch 1's backward before micro-batch 0's forward; rank 1 runs
  // micro-batch 0 first: each waits for the other. Every per-rank rule holds.
  Schedule s = make_gpipe(2, 2);
  s.ranks[0] = {act(ActionType::F, 0, 1), act(ActionType::B, 0, 1), act(ActionType::F, 0, 0),
                act(ActionType::B, 0, 0)};
  s.ranks[1] = {act(ActionType::F, 1, 0), act(ActionType::B, 1, 0), act(ActionType::F, 1, 1),
                act(ActionType::B, 1, 1)};
  EXPECT_NO_THROW(validate_schedule(s));
  expect_rule(s, "deadlocks");
  expect_rule(s, "rank 0 waits at action #1 (0B1) for 1B1 on rank 1");
  expect_rule(s, "rank 1 waits at action #0 (1F0) for 0F0 on rank 0");
  expect_rule(s, "cycle: rank 0 -> rank 1 -> rank 0");
}

TEST(ScheduleCheck, ReceiveWaitingBeforeTheSendItEnablesDeadlocks) {
  // Lowered 1F1B with rank 0 waiting for micro-batch 0's gradient before it sends micro-batch
  // 0's activation: a blocking receive posted too early.
  Schedule s = lower_schedule(make_1f1b(2, 2));
  Action recv = act(ActionType::RECV_B, 0, 0, 1);
  erase(s.ranks[0], recv);
  s.ranks[0].insert(s.ranks[0].begin(), recv);
  EXPECT_NO_THROW(validate_schedule(s));
  try {
    simulate_schedule(s);
    ADD_FAILURE() << "expected a deadlock";
  } catch (const ScheduleRuleError& e) {
    EXPECT_NE(std::string(e.what()).find("cycle: rank 0 -> rank 1 -> rank 0"), std::string::npos)
        << e.what();
    EXPECT_EQ(e.rank(), 0);
    EXPECT_EQ(e.index(), 0);
  }
}

TEST(ScheduleCheck, UnmatchedSendIsRefused) {
  Schedule s = lower_schedule(make_1f1b(2, 4));
  erase(s.ranks[1], act(ActionType::RECV_F, 1, 2, 0));
  expect_rule(s, "rank 0 action #7 (0SEND_F2): unmatched: no 1RECV_F2 on rank 1");
  expect_rule(s, "every send matched by exactly one receive");
}

TEST(ScheduleCheck, UnmatchedReceiveIsRefused) {
  Schedule s = lower_schedule(make_1f1b(2, 4));
  erase(s.ranks[1], act(ActionType::SEND_B, 1, 3, 0));
  expect_rule(s, "(0RECV_B3): unmatched: no 1SEND_B3 on rank 1");
}

TEST(ScheduleCheck, BackwardBeforeItsForwardIsRefused) {
  Schedule s = make_gpipe(2, 2);
  std::swap(s.ranks[1][0], s.ranks[1][2]);  // 1B0 ahead of 1F0
  expect_rule(s, "rank 1 action #0 (1B0): backward before its F");
}

TEST(ScheduleCheck, MissingMicroBatchIsRefused) {
  Schedule s = make_1f1b(2, 4);
  erase(s.ranks[1], act(ActionType::F, 1, 3));
  erase(s.ranks[1], act(ActionType::B, 1, 3));
  expect_rule(s, "stage 1 micro-batch 3 has no F");
  Schedule no_backward = make_1f1b(2, 4);
  erase(no_backward.ranks[0], act(ActionType::B, 0, 2));
  expect_rule(no_backward, "stage 0 micro-batch 2 has no backward");
}

TEST(ScheduleCheck, DuplicateIsRefused) {
  Schedule s = make_1f1b(2, 4);
  s.ranks[0].push_back(act(ActionType::F, 0, 1));
  expect_rule(s, "duplicate action, already at rank 0 action #1 (0F1)");
}

TEST(ScheduleCheck, SplitBackwardRules) {
  Schedule w_first = make_zb_h1(2, 2);
  auto& r0 = w_first.ranks[0];  // 0F0 0F1 0I0 0W0 0I1 0W1
  ASSERT_EQ(r0[3], act(ActionType::W, 0, 0));
  std::swap(r0[2], r0[3]);
  expect_rule(w_first, "W before its I");

  Schedule lone_i = make_zb_h1(2, 2);
  erase(lone_i.ranks[0], act(ActionType::W, 0, 1));
  expect_rule(lone_i, "I without its W");

  Schedule both = make_zb_h1(2, 2);
  both.ranks[0].push_back(act(ActionType::B, 0, 0));
  expect_rule(both, "both B and I/W");
}

TEST(ScheduleCheck, PlacementRangesAndPeers) {
  Schedule wrong_rank = make_gpipe(2, 2);
  wrong_rank.ranks[0].push_back(act(ActionType::F, 1, 0));
  expect_rule(wrong_rank, "stage 1 lives on rank 1 (stage s on rank s % pp)");

  Schedule out_of_range = make_gpipe(2, 2);
  out_of_range.ranks[0][0].micro_batch = 2;
  expect_rule(out_of_range, "micro-batch out of range [0, 2)");

  Schedule wrong_peer = lower_schedule(make_gpipe(4, 2));
  auto send = std::find(wrong_peer.ranks[1].begin(), wrong_peer.ranks[1].end(),
                        act(ActionType::SEND_F, 1, 0, 2));
  ASSERT_NE(send, wrong_peer.ranks[1].end());
  send->peer = 3;
  expect_rule(wrong_peer, "peer must be rank 2");

  Schedule peer_on_compute = make_gpipe(2, 2);
  peer_on_compute.ranks[0][0].peer = 1;
  expect_rule(peer_on_compute, "only SEND_*/RECV_* actions take a peer");

  Schedule no_neighbour = lower_schedule(make_gpipe(2, 2));
  no_neighbour.ranks[0].push_back(act(ActionType::RECV_F, 0, 0, 1));
  expect_rule(no_neighbour, "no neighbouring stage");

  Schedule shape = make_gpipe(2, 2);
  shape.ranks.pop_back();
  expect_rule(shape, "expected action lists for 2 ranks, got 1");
}

TEST(ScheduleCheck, AStrayVocabularyPassIsRefused) {
  // One vocabulary pass on one rank: vocabulary parallelism is all four kinds on every rank or
  // nothing (tests/unit/test_schedule_vocab_check.cpp has the rest of its rules).
  for (ActionType vocab :
       {ActionType::S, ActionType::T, ActionType::EMBED_F, ActionType::EMBED_B}) {
    Schedule s = make_1f1b(2, 2);
    const int stage = vocab == ActionType::S || vocab == ActionType::T ? 1 : 0;
    s.ranks[1].push_back(act(vocab, stage, 0));
    expect_rule(s, "rank 1 action #4 (" + format_action(act(vocab, stage, 0)) +
                       "): a vocabulary-parallel pass, but rank 0 has none");
  }
}

TEST(ScheduleCheck, LoweredScheduleNeedsEveryReceiveAndSendAndReduce) {
  // Both ends of one message removed: nothing unmatched, but F(0, 1)'s output goes nowhere.
  Schedule no_message = lower_schedule(make_1f1b(2, 4));
  erase(no_message.ranks[0], act(ActionType::SEND_F, 0, 1, 1));
  erase(no_message.ranks[1], act(ActionType::RECV_F, 1, 1, 0));
  expect_rule(no_message, "(0F1): its output is never sent: needs 0SEND_F1");

  Schedule no_gradient = lower_schedule(make_1f1b(2, 4));
  erase(no_gradient.ranks[0], act(ActionType::RECV_B, 0, 0, 1));
  erase(no_gradient.ranks[1], act(ActionType::SEND_B, 1, 0, 0));
  expect_rule(no_gradient, "(0B0): needs 0RECV_B0 (cross-rank data goes through a receive)");

  Schedule late_receive = lower_schedule(make_1f1b(2, 4));
  Action recv = act(ActionType::RECV_B, 0, 0, 1);
  erase(late_receive.ranks[0], recv);
  late_receive.ranks[0].push_back(recv);
  expect_rule(late_receive, "(0RECV_B0): must come before rank 0 action #");

  Schedule early_send = lower_schedule(make_1f1b(2, 4));
  Action send = act(ActionType::SEND_F, 0, 0, 1);
  erase(early_send.ranks[0], send);
  early_send.ranks[0].insert(early_send.ranks[0].begin(), send);
  expect_rule(early_send, "(0SEND_F0): sends before rank 0 action #1 (0F0) ran");

  Schedule no_reduce = lower_schedule(make_1f1b(2, 4));
  erase(no_reduce.ranks[1], act(ActionType::REDUCE_GRAD, 1, kNoMicroBatch));
  expect_rule(no_reduce, "stage 1 has no REDUCE_GRAD");

  Schedule early_reduce = lower_schedule(make_1f1b(2, 4));
  Action reduce = act(ActionType::REDUCE_GRAD, 0, kNoMicroBatch);
  erase(early_reduce.ranks[0], reduce);
  early_reduce.ranks[0].insert(early_reduce.ranks[0].begin() + 3, reduce);
  expect_rule(early_reduce, "REDUCE_GRAD before rank 0 action #");
}

TEST(ScheduleCheck, SameRankStagesKeepTheirOrder) {
  Schedule s = make_interleaved(1, 2, 2);  // stages 0 and 1 both on rank 0
  auto& r = s.ranks[0];
  auto f0 = std::find(r.begin(), r.end(), act(ActionType::F, 0, 0));
  auto f1 = std::find(r.begin(), r.end(), act(ActionType::F, 1, 0));
  std::iter_swap(f0, f1);
  expect_rule(s, "F before the F of stage 0 on the same rank");
}

TEST(ScheduleCheck, ErrorsCarryTheRankAndIndex) {
  Schedule s = make_gpipe(2, 2);
  std::swap(s.ranks[1][1], s.ranks[1][3]);  // 1B1 ahead of 1F1
  try {
    validate_schedule(s);
    ADD_FAILURE() << "expected a ScheduleRuleError";
  } catch (const ScheduleRuleError& e) {
    EXPECT_EQ(e.rank(), 1);
    EXPECT_EQ(e.index(), 1);
    EXPECT_EQ(e.code(), ExitCode::bad_input);
  }
}

}  // namespace
}  // namespace strata
