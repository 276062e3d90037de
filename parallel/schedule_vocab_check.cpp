#include "parallel/schedule_vocab_check.h"

#include <array>
#include <string>
#include <vector>

#include "parallel/schedule_check.h"

namespace strata {
namespace {

// The four kinds in the order the docs list them; index into VocabValidator::at_.
constexpr std::array<ActionType, 4> kKinds = {ActionType::EMBED_F, ActionType::S, ActionType::T,
                                              ActionType::EMBED_B};
constexpr int kind_index(ActionType type) {
  return type == ActionType::EMBED_F ? 0
         : type == ActionType::S     ? 1
         : type == ActionType::T     ? 2
                                     : 3;
}

constexpr const char* kEveryRank =
    "a vocabulary-parallel schedule runs EMBED_F, S, T and EMBED_B of every micro-batch once on "
    "every rank";

class VocabValidator {
 public:
  explicit VocabValidator(const Schedule& schedule)
      : s_(schedule), last_(schedule.stages - 1), at_(schedule.ranks.size()) {
    for (auto& kinds : at_)
      for (auto& by_mb : kinds) by_mb.assign(s_.micro_batches, -1);
  }

  void run() {
    for (int rank = 0; rank < s_.pp; ++rank)
      for (int index = 0; index < size(rank); ++index)
        if (is_vocab(s_.ranks[rank][index].type)) collect(rank, index);
    if (first_rank_ < 0) return;  // no vocabulary passes: nothing more to check
    check_every_rank_has_them();
    check_complete();
    check_collective_order();
    for (int rank = 0; rank < s_.pp; ++rank) check_t_after_s(rank);
    for (int mb = 0; mb < s_.micro_batches; ++mb) check_anchors(mb);
  }

 private:
  int size(int rank) const { return static_cast<int>(s_.ranks[rank].size()); }
  std::string describe(int rank, int index) const {
    return "rank " + std::to_string(rank) + " action #" + std::to_string(index) + " (" +
           format_action(s_.ranks[rank][index]) + ")";
  }
  [[noreturn]] void fail(int rank, int index, const std::string& rule) const {
    throw ScheduleRuleError("pipeline schedule: " + describe(rank, index) + ": " + rule, rank,
                            index);
  }
  int stage_of(ActionType type) const {
    return type == ActionType::S || type == ActionType::T ? last_ : 0;
  }
  std::string name(ActionType type, int mb) const {
    return format_action(Action{.type = type, .stage = stage_of(type), .micro_batch = mb});
  }
  int where(int rank, ActionType type, int mb) const { return at_[rank][kind_index(type)][mb]; }

  void collect(int rank, int index) {
    const Action& a = s_.ranks[rank][index];
    if (a.stage != stage_of(a.type))
      fail(rank, index,
           std::string(a.type == ActionType::S || a.type == ActionType::T
                           ? "S and T carry the last stage (" + std::to_string(last_) + ")"
                           : "EMBED_F and EMBED_B carry stage 0") +
               ", the stage whose data they serve, on every rank");
    if (a.micro_batch < 0 || a.micro_batch >= s_.micro_batches)
      fail(rank, index, "micro-batch out of range [0, " + std::to_string(s_.micro_batches) + ")");
    if (a.peer != kNoPeer)
      fail(rank, index, "only SEND_*/RECV_* actions take a peer (a collective needs none)");
    int& slot = at_[rank][kind_index(a.type)][a.micro_batch];
    if (slot >= 0) fail(rank, index, "duplicate action, already at " + describe(rank, slot));
    slot = index;
    if (first_rank_ < 0) first_rank_ = rank, first_index_ = index;
  }

  void check_every_rank_has_them() const {
    for (int rank = 0; rank < s_.pp; ++rank) {
      bool any = false;
      for (const auto& by_mb : at_[rank])
        for (int index : by_mb) any = any || index >= 0;
      if (!any)
        fail(first_rank_, first_index_,
             "a vocabulary-parallel pass, but rank " + std::to_string(rank) +
                 " has none (a schedule runs EMBED_F, S, T and EMBED_B on every rank or on none)");
    }
  }

  void check_complete() const {
    for (int rank = 0; rank < s_.pp; ++rank)
      for (ActionType type : kKinds)
        for (int mb = 0; mb < s_.micro_batches; ++mb)
          if (where(rank, type, mb) < 0)
            throw ScheduleRuleError("pipeline schedule: rank " + std::to_string(rank) + " has no " +
                                        std::string(action_name(type)) + " for micro-batch " +
                                        std::to_string(mb) + " (" + name(type, mb) +
                                        "): " + kEveryRank,
                                    rank, -1);
  }

  std::vector<int> collectives(int rank) const {
    std::vector<int> indexes;
    for (int index = 0; index < size(rank); ++index)
      if (is_vocab_collective(s_.ranks[rank][index].type)) indexes.push_back(index);
    return indexes;
  }

  // Every rank holds the same collectives (check_complete), so the lists have one length.
  void check_collective_order() const {
    const std::vector<int> reference = collectives(0);
    for (int rank = 1; rank < s_.pp; ++rank) {
      const std::vector<int> mine = collectives(rank);
      for (size_t k = 0; k < mine.size(); ++k) {
        const Action& a = s_.ranks[rank][mine[k]];
        const Action& b = s_.ranks[0][reference[k]];
        if (a.type == b.type && a.micro_batch == b.micro_batch) continue;
        fail(rank, mine[k],
             "collective #" + std::to_string(k) + " differs from rank 0's, " +
                 describe(0, reference[k]) +
                 " (EMBED_F, S and EMBED_B are collectives over all ranks: every rank runs them "
                 "in one order)");
      }
    }
  }

  void check_t_after_s(int rank) const {
    for (int mb = 0; mb < s_.micro_batches; ++mb) {
      const int t = where(rank, ActionType::T, mb), s = where(rank, ActionType::S, mb);
      if (t < s)
        fail(rank, t,
             "T before its S, " + describe(rank, s) +
                 " (T's weight gradient needs the softmax statistics S gathers)");
    }
  }

  // The first B or I of (stage, mb) on its rank: the backward that makes its input gradient.
  int backward_input(int rank, int stage, int mb) const {
    for (int index = 0; index < size(rank); ++index) {
      const Action& a = s_.ranks[rank][index];
      if ((a.type == ActionType::B || a.type == ActionType::I) && a.stage == stage &&
          a.micro_batch == mb)
        return index;
    }
    return -1;  // unreachable once the stage rules hold
  }
  int forward(int rank, int stage, int mb) const {
    for (int index = 0; index < size(rank); ++index)
      if (s_.ranks[rank][index] == Action{.type = ActionType::F, .stage = stage, .micro_batch = mb})
        return index;
    return -1;
  }

  // The dependencies on the rank that holds the data: the collective carries it to the others.
  void check_anchors(int mb) const {
    const int first_rank = s_.rank_of_stage(0), last_rank = s_.rank_of_stage(last_);
    const int embed_f = where(first_rank, ActionType::EMBED_F, mb);
    const int embed_b = where(first_rank, ActionType::EMBED_B, mb);
    const int s = where(last_rank, ActionType::S, mb);
    if (const int f0 = forward(first_rank, 0, mb); embed_f > f0)
      fail(first_rank, embed_f,
           "after " + describe(first_rank, f0) + " (the lookup produces stage 0's input)");
    if (const int b0 = backward_input(first_rank, 0, mb); embed_b < b0)
      fail(first_rank, embed_b,
           "before " + describe(first_rank, b0) +
               " (the embedding's gradient is stage 0's input gradient)");
    if (const int f = forward(last_rank, last_, mb); s < f)
      fail(last_rank, s, "before " + describe(last_rank, f) + " (S takes the last stage's output)");
    if (const int b = backward_input(last_rank, last_, mb); s > b)
      fail(last_rank, s,
           "after " + describe(last_rank, b) +
               " (the last stage's backward starts from the loss gradient S makes)");
  }

  const Schedule& s_;
  const int last_;
  std::vector<std::array<std::vector<int>, 4>> at_;  // [rank][kind][mb] -> index, -1 if none
  int first_rank_ = -1, first_index_ = -1;           // the first vocabulary action seen
};

}  // namespace

void check_vocab_passes(const Schedule& schedule) { VocabValidator(schedule).run(); }

}  // namespace strata
