// Vocabulary-parallel schedules (docs/PIPELINE.md, "Vocabulary passes"): the validator's rules on
// hand-broken schedules, each refused naming the rank, the action and the rule, and the
// simulator's collectives (each rank runs its part and goes on, the result waits for every part;
// a rank whose part never comes is named in the deadlock).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "input_error_util.h"
#include "parallel/schedule_check.h"
#include "parallel/schedule_file.h"
#include "parallel/schedule_gen.h"
#include "parallel/schedule_sim.h"
#include "parallel/schedule_vocab.h"

namespace strata {
namespace {

using test::expect_input_error;

Action act(ActionType type, int stage, int mb) { return {type, stage, mb, kNoPeer}; }

void expect_rule(const Schedule& s, const std::string& needle) {
  expect_input_error([&] { simulate_schedule(s); }, needle);
}

size_t index_of(const std::vector<Action>& actions, const Action& a) {
  auto it = std::find(actions.begin(), actions.end(), a);
  EXPECT_NE(it, actions.end()) << format_action(a);
  return static_cast<size_t>(it - actions.begin());
}

void erase(std::vector<Action>& actions, const Action& a) {
  actions.erase(actions.begin() + static_cast<std::ptrdiff_t>(index_of(actions, a)));
}

// GPipe, pp = 2, one micro-batch, the passes written by hand: EMBED_F, F, S, T, B, EMBED_B on
// both ranks (stage 0's F before S on rank 0 is its own business, the collective only waits).
Schedule hand_written() {
  Schedule s = make_gpipe(2, 1);
  for (int r = 0; r < 2; ++r)
    s.ranks[r] = {act(ActionType::EMBED_F, 0, 0), act(ActionType::F, r, 0),
                  act(ActionType::S, 1, 0),       act(ActionType::T, 1, 0),
                  act(ActionType::B, r, 0),       act(ActionType::EMBED_B, 0, 0)};
  return s;
}

// 1F1B, pp = 2, m = 4 with the passes placed (the schedules the rules are broken from).
Schedule placed() { return add_vocab_passes(make_1f1b(2, 4), SimCosts{}); }

TEST(ScheduleVocabCheck, HandWrittenScheduleValidatesAndItsCollectivesSynchronise) {
  const Schedule s = hand_written();
  EXPECT_NO_THROW(validate_schedule(s));
  EXPECT_TRUE(has_vocab_passes(s));
  EXPECT_FALSE(is_lowered(s));
  SimCosts costs;
  costs.embed_f = costs.embed_b = 0.5;
  const SimResult r = simulate_schedule(s, costs);
  // EMBED_F 0-0.5 on both; 0F0 0.5-1.5 (after the sum); 1F0 1.5-2.5; S reads 1F0's output:
  // 2.5-2.75 on both; T 2.75-3; 1B0 3-5; 0B0 5-7. EMBED_B: rank 1 only posts its part of the
  // broadcast (5-5.5, overlapping rank 0's 0B0), rank 0 roots it after 0B0: 7-7.5.
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_DOUBLE_EQ(r.start[rank][2], 2.5) << "S on rank " << rank;
    EXPECT_DOUBLE_EQ(r.finish[rank][3], 3) << "T on rank " << rank;
    EXPECT_DOUBLE_EQ(r.start[rank][5], rank == 0 ? 7 : 5) << "EMBED_B on rank " << rank;
    EXPECT_DOUBLE_EQ(r.busy[rank], 4.5) << "the vocabulary passes are busy time";
  }
  EXPECT_DOUBLE_EQ(r.makespan, 7.5);
  EXPECT_DOUBLE_EQ(r.bubble_fraction, 1 - 9.0 / 15);
  const std::string table = format_schedule_table(s, r);
  EXPECT_NE(table.find("1S0"), std::string::npos) << table;
  EXPECT_NE(table.find("0EMBED_F0"), std::string::npos) << table;
}

TEST(ScheduleVocabCheck, LoweringAddsNoMessagesForTheVocabularyPasses) {
  const Schedule lowered = lower_schedule(hand_written());
  // rank 0: EMBED_F F SEND_F S T RECV_B B REDUCE_GRAD EMBED_B
  const std::vector<Action> rank0 = {
      act(ActionType::EMBED_F, 0, 0), act(ActionType::F, 0, 0),
      {ActionType::SEND_F, 0, 0, 1},  act(ActionType::S, 1, 0),
      act(ActionType::T, 1, 0),       {ActionType::RECV_B, 0, 0, 1},
      act(ActionType::B, 0, 0),       act(ActionType::REDUCE_GRAD, 0, kNoMicroBatch),
      act(ActionType::EMBED_B, 0, 0)};
  EXPECT_EQ(lowered.ranks[0], rank0);
  EXPECT_NO_THROW(simulate_schedule(lowered));
}

TEST(ScheduleVocabCheck, CollectiveOrderDifferingBetweenRanksIsRefused) {
  Schedule s = placed();
  // Swap micro-batches 0 and 1's EMBED_F on rank 1 (which anchors neither): rank 1's first
  // collective is then 0EMBED_F1 where rank 0 has 0EMBED_F0.
  auto& r1 = s.ranks[1];
  const size_t a = index_of(r1, act(ActionType::EMBED_F, 0, 0));
  const size_t b = index_of(r1, act(ActionType::EMBED_F, 0, 1));
  std::swap(r1[a], r1[b]);
  const size_t on_rank0 = index_of(s.ranks[0], act(ActionType::EMBED_F, 0, 0));
  expect_rule(s, "pipeline schedule: rank 1 action #" + std::to_string(a) +
                     " (0EMBED_F1): collective #0 differs from rank 0's, rank 0 action #" +
                     std::to_string(on_rank0) + " (0EMBED_F0)");
  expect_rule(s, "every rank runs them in one order");
  try {
    validate_schedule(s);
    ADD_FAILURE() << "expected a ScheduleRuleError";
  } catch (const ScheduleRuleError& e) {
    EXPECT_EQ(e.rank(), 1);
    EXPECT_EQ(e.index(), static_cast<int>(a));
  }
}

TEST(ScheduleVocabCheck, AMissingPassOnOneRankIsRefused) {
  Schedule s = placed();
  erase(s.ranks[0], act(ActionType::S, 1, 2));
  expect_rule(s,
              "pipeline schedule: rank 0 has no S for micro-batch 2 (1S2): a vocabulary-"
              "parallel schedule runs EMBED_F, S, T and EMBED_B of every micro-batch once on "
              "every rank");
}

TEST(ScheduleVocabCheck, TBeforeItsSIsRefused) {
  Schedule s = placed();
  auto& r0 = s.ranks[0];
  const Action t = act(ActionType::T, 1, 1);
  erase(r0, t);
  const size_t s_at = index_of(r0, act(ActionType::S, 1, 1));
  r0.insert(r0.begin() + static_cast<std::ptrdiff_t>(s_at), t);
  expect_rule(s, "rank 0 action #" + std::to_string(s_at) +
                     " (1T1): T before its S, rank 0 action #" + std::to_string(s_at + 1) +
                     " (1S1)");
}

TEST(ScheduleVocabCheck, MixingVocabularyAndPlainRanksIsRefused) {
  Schedule s = placed();
  auto& r1 = s.ranks[1];
  r1.erase(std::remove_if(r1.begin(), r1.end(), [](const Action& a) { return is_vocab(a.type); }),
           r1.end());
  const size_t first = index_of(s.ranks[0], act(ActionType::EMBED_F, 0, 0));
  expect_rule(s, "rank 0 action #" + std::to_string(first) +
                     " (0EMBED_F0): a vocabulary-parallel pass, but rank 1 has none (a schedule "
                     "runs EMBED_F, S, T and EMBED_B on every rank or on none)");
}

TEST(ScheduleVocabCheck, FieldsOfAVocabularyPass) {
  Schedule wrong_stage = placed();
  wrong_stage.ranks[0][index_of(wrong_stage.ranks[0], act(ActionType::S, 1, 0))].stage = 0;
  expect_rule(wrong_stage, "(0S0): S and T carry the last stage (1)");
  Schedule embed_stage = placed();
  embed_stage.ranks[1][index_of(embed_stage.ranks[1], act(ActionType::EMBED_B, 0, 3))].stage = 1;
  expect_rule(embed_stage, "(1EMBED_B3): EMBED_F and EMBED_B carry stage 0");
  Schedule out_of_range = placed();
  out_of_range.ranks[1][index_of(out_of_range.ranks[1], act(ActionType::T, 1, 3))].micro_batch = 4;
  expect_rule(out_of_range, "(1T4): micro-batch out of range [0, 4)");
  Schedule peer = placed();
  peer.ranks[0][index_of(peer.ranks[0], act(ActionType::EMBED_F, 0, 0))].peer = 1;
  expect_rule(peer, "(0EMBED_F0): only SEND_*/RECV_* actions take a peer");
  Schedule duplicate = placed();
  duplicate.ranks[0].push_back(act(ActionType::T, 1, 0));
  expect_rule(duplicate, "(1T0): duplicate action, already at rank 0 action #");
}

TEST(ScheduleVocabCheck, ThePassesFollowTheirDataOnTheAnchorRank) {
  // One rank (pp = 1): the collective order is trivially the same, only the data rules bite.
  Schedule base = make_1f1b(1, 2);
  const std::vector<Action> expected = {
      act(ActionType::EMBED_F, 0, 0), act(ActionType::F, 0, 0), act(ActionType::S, 0, 0),
      act(ActionType::T, 0, 0),       act(ActionType::B, 0, 0), act(ActionType::EMBED_B, 0, 0),
      act(ActionType::EMBED_F, 0, 1), act(ActionType::F, 0, 1), act(ActionType::S, 0, 1),
      act(ActionType::T, 0, 1),       act(ActionType::B, 0, 1), act(ActionType::EMBED_B, 0, 1)};
  base.ranks[0] = expected;
  ASSERT_NO_THROW(validate_schedule(base));
  auto broken = [&](size_t i, size_t j) {
    Schedule s = base;
    std::swap(s.ranks[0][i], s.ranks[0][j]);
    return s;
  };
  expect_rule(broken(0, 1),
              "rank 0 action #1 (0EMBED_F0): after rank 0 action #0 (0F0) (the "
              "lookup produces stage 0's input)");
  expect_rule(broken(1, 2),
              "rank 0 action #1 (0S0): before rank 0 action #2 (0F0) (S takes the "
              "last stage's output)");
  Schedule s_after_b = base;  // 0F0 0T0 0B0 0S0: T moves too, or T-before-S fires first
  s_after_b.ranks[0] = {expected[0], expected[1], expected[4],
                        expected[2], expected[3], expected[5]};
  s_after_b.ranks[0].insert(s_after_b.ranks[0].end(), expected.begin() + 6, expected.end());
  expect_rule(s_after_b,
              "rank 0 action #3 (0S0): after rank 0 action #2 (0B0) (the last "
              "stage's backward starts from the loss gradient S makes)");
  expect_rule(broken(4, 5),
              "rank 0 action #4 (0EMBED_B0): before rank 0 action #5 (0B0) (the "
              "embedding's gradient is stage 0's input gradient)");
}

TEST(ScheduleVocabCheck, ACollectiveARankNeverReachesDeadlocksNamingTheRanks) {
  // Same collective order on both ranks, but rank 0 takes S before the forward whose output the
  // last stage needs before it can reach S: each waits for the other.
  Schedule s = hand_written();
  s.ranks[0] = {act(ActionType::EMBED_F, 0, 0), act(ActionType::S, 1, 0),
                act(ActionType::F, 0, 0),       act(ActionType::T, 1, 0),
                act(ActionType::B, 0, 0),       act(ActionType::EMBED_B, 0, 0)};
  EXPECT_NO_THROW(validate_schedule(s));
  expect_rule(s,
              "pipeline schedule deadlocks (no rank can make progress): rank 0 waits at "
              "action #1 (1S0) for 1F0 on rank 1; rank 1 waits at action #1 "
              "(1F0) for 0F0 on rank 0; cycle: rank 0 -> rank 1 -> rank 0");
  // Lowered, the same: the receive is where rank 1 waits.
  expect_rule(lower_schedule(s), "rank 0 waits at action #1 (1S0) for 1F0 on rank 1");
}

TEST(ScheduleVocabCheck, AResultWaitingForAPartThatNeverComesNamesItsRank) {
  // Rank 0 takes its part of S only after its backward, which needs the last stage's backward,
  // which needs S's result: the last stage waits at T for rank 0's part.
  Schedule s = hand_written();
  s.ranks[0] = {act(ActionType::EMBED_F, 0, 0), act(ActionType::F, 0, 0),
                act(ActionType::B, 0, 0),       act(ActionType::S, 1, 0),
                act(ActionType::T, 1, 0),       act(ActionType::EMBED_B, 0, 0)};
  EXPECT_NO_THROW(validate_schedule(s));
  expect_rule(s,
              "rank 0 waits at action #2 (0B0) for 1B0 on rank 1; rank 1 waits at action #3 "
              "(1T0) for the collective 1S0 of rank 0; cycle: rank 0 -> rank 1 -> rank 0");
}

TEST(ScheduleVocabCheck, ACollectiveOrderMismatchIsRefusedBeforeItCouldHang) {
  // Rank 1 runs EMBED_B before S: in a real run both ranks would block in different collectives
  // (a hang, not an error); the simulator's validation refuses it up front.
  Schedule s = hand_written();
  s.ranks[1] = {act(ActionType::EMBED_F, 0, 0), act(ActionType::F, 1, 0),
                act(ActionType::EMBED_B, 0, 0), act(ActionType::S, 1, 0),
                act(ActionType::T, 1, 0),       act(ActionType::B, 1, 0)};
  expect_rule(s,
              "rank 1 action #2 (0EMBED_B0): collective #1 differs from rank 0's, rank 0 "
              "action #2 (1S0)");
}

TEST(ScheduleVocabCheck, CsvWithVocabularyPassesLoadsAndNamesTheLine) {
  const Schedule s = lower_schedule(add_vocab_passes(make_zb_h1(4, 8), SimCosts{}));
  const std::string csv = write_schedule_csv(s);
  EXPECT_NE(csv.find(",S,3,0,\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",EMBED_F,0,0,\n"), std::string::npos) << csv;
  EXPECT_EQ(load_schedule_csv(csv, "vocab.csv"), s);
  // Rank 2's T of micro-batch 0 turned into a second S (its S comes first): the duplicate's line.
  std::string broken = csv;
  const size_t row = broken.find(",T,3,0,", broken.find("\n2,"));
  ASSERT_NE(row, std::string::npos);
  broken.replace(row, 7, ",S,3,0,");
  const auto line =
      1 + std::count(broken.begin(), broken.begin() + static_cast<std::ptrdiff_t>(row), '\n');
  expect_input_error([&] { load_schedule_csv(broken, "vocab.csv"); },
                     "vocab.csv:" + std::to_string(line) + ": pipeline schedule: rank 2 action #");
  expect_input_error([&] { load_schedule_csv(broken, "vocab.csv"); }, "(3S0): duplicate action");
}

}  // namespace
}  // namespace strata
