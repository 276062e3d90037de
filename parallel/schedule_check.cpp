#include "parallel/schedule_check.h"

#include <map>
#include <tuple>
#include <vector>

#include "parallel/schedule_vocab_check.h"

namespace strata {
namespace {

using ActionKey = std::tuple<ActionType, int, int>;  // (type, stage, micro_batch)
ActionKey key_of(ActionType type, int stage, int micro_batch) { return {type, stage, micro_batch}; }

struct Location {
  int rank = -1;
  int index = -1;
};

std::string describe(const Schedule& schedule, Location at) {
  return "rank " + std::to_string(at.rank) + " action #" + std::to_string(at.index) + " (" +
         format_action(schedule.ranks[at.rank][at.index]) + ")";
}

std::string name_of(ActionType type, int stage, int micro_batch) {
  return format_action(Action{.type = type, .stage = stage, .micro_batch = micro_batch});
}

// One pass over the schedule, then the rules; every violation throws at its first occurrence.
class Validator {
 public:
  explicit Validator(const Schedule& schedule) : s_(schedule) {}

  void run() {
    check_shape();
    // Vocabulary passes sit on every rank with a fixed stage: their own rules follow the
    // stages' (parallel/schedule_vocab_check.h), which they rely on.
    for (int rank = 0; rank < s_.pp; ++rank)
      for (int index = 0; index < static_cast<int>(s_.ranks[rank].size()); ++index)
        if (!is_vocab(s_.ranks[rank][index].type)) check_action({rank, index});
    for (int stage = 0; stage < s_.stages; ++stage)
      for (int mb = 0; mb < s_.micro_batches; ++mb) check_micro_batch(stage, mb);
    check_vocab_passes(s_);
    if (is_lowered(s_)) {
      check_sends_matched();
      for (int stage = 0; stage < s_.stages; ++stage) {
        for (int mb = 0; mb < s_.micro_batches; ++mb) check_lowered_dependencies(stage, mb);
        check_reduce_grad(stage);
      }
    }
  }

 private:
  [[noreturn]] void fail(Location at, const std::string& rule) const {
    throw ScheduleRuleError("pipeline schedule: " + describe(s_, at) + ": " + rule, at.rank,
                            at.index);
  }
  [[noreturn]] void fail_whole(const std::string& rule) const {
    throw ScheduleRuleError("pipeline schedule: " + rule, -1, -1);
  }
  const Location* find(ActionType type, int stage, int mb) const {
    auto it = where_.find(key_of(type, stage, mb));
    return it == where_.end() ? nullptr : &it->second;
  }
  const Action& action_at(Location at) const { return s_.ranks[at.rank][at.index]; }

  void check_shape() const {
    if (s_.pp < 1 || s_.stages < 1 || s_.micro_batches < 1)
      fail_whole("pp, stages and micro_batches must be >= 1");
    if (s_.stages % s_.pp != 0)
      fail_whole("stages (" + std::to_string(s_.stages) + ") must be a multiple of pp (" +
                 std::to_string(s_.pp) + ")");
    if (static_cast<int>(s_.ranks.size()) != s_.pp)
      fail_whole("expected action lists for " + std::to_string(s_.pp) + " ranks, got " +
                 std::to_string(s_.ranks.size()));
  }

  // The rank of the stage a communication action talks to, or -1 when there is none.
  int expected_peer(const Action& a) const {
    int neighbour =
        (a.type == ActionType::SEND_F || a.type == ActionType::RECV_B) ? a.stage + 1 : a.stage - 1;
    return neighbour < 0 || neighbour >= s_.stages ? -1 : s_.rank_of_stage(neighbour);
  }

  void check_action(Location at) {
    const Action& a = action_at(at);
    if (a.stage < 0 || a.stage >= s_.stages)
      fail(at, "stage out of range [0, " + std::to_string(s_.stages) + ")");
    if (s_.rank_of_stage(a.stage) != at.rank)
      fail(at, "stage " + std::to_string(a.stage) + " lives on rank " +
                   std::to_string(s_.rank_of_stage(a.stage)) + " (stage s on rank s % pp)");
    if (a.type == ActionType::REDUCE_GRAD) {
      if (a.micro_batch != kNoMicroBatch) fail(at, "REDUCE_GRAD takes no micro-batch");
    } else if (a.micro_batch < 0 || a.micro_batch >= s_.micro_batches) {
      fail(at, "micro-batch out of range [0, " + std::to_string(s_.micro_batches) + ")");
    }
    check_peer(at, a);
    auto [it, inserted] = where_.emplace(key_of(a.type, a.stage, a.micro_batch), at);
    if (!inserted) fail(at, "duplicate action, already at " + describe(s_, it->second));
  }

  void check_peer(Location at, const Action& a) const {
    if (!is_communication(a.type)) {
      if (a.peer != kNoPeer) fail(at, "only SEND_*/RECV_* actions take a peer");
      return;
    }
    int peer = expected_peer(a);
    if (peer < 0) fail(at, "no neighbouring stage to exchange with");
    if (peer == at.rank)
      fail(at, "the neighbouring stage is on the same rank: no message is needed");
    if (a.peer != peer)
      fail(at, "peer must be rank " + std::to_string(peer) +
                   " (the neighbouring stage's rank), got " + std::to_string(a.peer));
  }

  void check_micro_batch(int stage, int mb) const {
    const Location* f = find(ActionType::F, stage, mb);
    const Location* b = find(ActionType::B, stage, mb);
    const Location* i = find(ActionType::I, stage, mb);
    const Location* w = find(ActionType::W, stage, mb);
    const std::string which =
        "stage " + std::to_string(stage) + " micro-batch " + std::to_string(mb);
    if (!f) fail_whole(which + " has no F (every stage runs every micro-batch's forward once)");
    if (b && (i || w)) fail(*b, "both B and I/W for " + which + " (one backward per micro-batch)");
    if (!b && !i && !w) fail_whole(which + " has no backward (B, or I and W)");
    if (i && !w) fail(*i, "I without its W (" + which + " needs its weight gradient)");
    if (w && !i) fail(*w, "W without its I (" + which + ")");
    const Location* backward = b ? b : i;
    if (backward->index < f->index)
      fail(*backward, "backward before its F (every F precedes its B/I)");
    if (w && w->index < i->index) fail(*w, "W before its I (every I precedes its W)");
    check_same_rank_order(stage, mb, *f, *backward);
  }

  // Adjacent stages on one rank (pp = 1 with several virtual stages) exchange nothing, so their
  // order on the rank is the dependency itself.
  void check_same_rank_order(int stage, int mb, Location f, Location backward) const {
    if (stage > 0 && s_.rank_of_stage(stage - 1) == f.rank) {
      const Location* producer = find(ActionType::F, stage - 1, mb);
      if (producer && producer->index > f.index)
        fail(f, "F before the F of stage " + std::to_string(stage - 1) + " on the same rank");
    }
    if (stage + 1 < s_.stages && s_.rank_of_stage(stage + 1) == backward.rank) {
      const Location* producer = find(ActionType::B, stage + 1, mb);
      if (!producer) producer = find(ActionType::I, stage + 1, mb);
      if (producer && producer->index > backward.index)
        fail(backward, "backward before the backward of stage " + std::to_string(stage + 1) +
                           " on the same rank");
    }
  }

  void check_sends_matched() const {
    for (const auto& [key, at] : where_) {
      const Action& a = action_at(at);
      if (!is_communication(a.type)) continue;
      ActionType partner = a.type == ActionType::SEND_F   ? ActionType::RECV_F
                           : a.type == ActionType::RECV_F ? ActionType::SEND_F
                           : a.type == ActionType::SEND_B ? ActionType::RECV_B
                                                          : ActionType::SEND_B;
      int partner_stage = (a.type == ActionType::SEND_F || a.type == ActionType::RECV_B)
                              ? a.stage + 1
                              : a.stage - 1;
      if (!find(partner, partner_stage, a.micro_batch))
        fail(at, "unmatched: no " + name_of(partner, partner_stage, a.micro_batch) + " on rank " +
                     std::to_string(a.peer) + " (every send matched by exactly one receive)");
    }
  }

  void require_before(const Location* first, Location consumer, const std::string& what) const {
    if (!first) fail(consumer, "needs " + what + " (cross-rank data goes through a receive)");
    if (first->index > consumer.index) fail(*first, "must come before " + describe(s_, consumer));
  }
  void require_after(const Location* send, Location producer, const std::string& what) const {
    if (!send) fail(producer, "its output is never sent: needs " + what);
    if (send->index < producer.index)
      fail(*send, "sends before " + describe(s_, producer) + " ran");
  }

  void check_lowered_dependencies(int stage, int mb) const {
    Location f = *find(ActionType::F, stage, mb);
    const Location* b = find(ActionType::B, stage, mb);
    Location backward = b ? *b : *find(ActionType::I, stage, mb);
    bool previous_remote = stage > 0 && s_.rank_of_stage(stage - 1) != f.rank;
    bool next_remote = stage + 1 < s_.stages && s_.rank_of_stage(stage + 1) != f.rank;
    if (previous_remote) {
      require_before(find(ActionType::RECV_F, stage, mb), f,
                     name_of(ActionType::RECV_F, stage, mb));
      require_after(find(ActionType::SEND_B, stage, mb), backward,
                    name_of(ActionType::SEND_B, stage, mb));
    }
    if (next_remote) {
      require_after(find(ActionType::SEND_F, stage, mb), f, name_of(ActionType::SEND_F, stage, mb));
      require_before(find(ActionType::RECV_B, stage, mb), backward,
                     name_of(ActionType::RECV_B, stage, mb));
    }
  }

  void check_reduce_grad(int stage) const {
    const Location* reduce = find(ActionType::REDUCE_GRAD, stage, kNoMicroBatch);
    if (!reduce)
      fail_whole("stage " + std::to_string(stage) +
                 " has no REDUCE_GRAD (a lowered schedule "
                 "reduces every stage's gradients once, after its last backward)");
    for (int mb = 0; mb < s_.micro_batches; ++mb)
      for (ActionType last : {ActionType::B, ActionType::W}) {
        const Location* backward = find(last, stage, mb);
        if (backward && backward->index > reduce->index)
          fail(*reduce, "REDUCE_GRAD before " + describe(s_, *backward) +
                            " (gradients are reduced after the stage's last backward)");
      }
  }

  const Schedule& s_;
  std::map<ActionKey, Location> where_;
};

}  // namespace

void validate_schedule(const Schedule& schedule) { Validator(schedule).run(); }

Schedule lower_schedule(const Schedule& compute_only) {
  if (is_lowered(compute_only))
    throw InputError("pipeline schedule: already lowered (it holds SEND/RECV/REDUCE_GRAD actions)");
  Schedule lowered = compute_only;
  const int last_stage = compute_only.stages - 1;
  for (int rank = 0; rank < compute_only.pp; ++rank) {
    const std::vector<Action>& in = compute_only.ranks[rank];
    std::map<int, size_t> last_backward;  // stage -> index of its last B or W on this rank
    for (size_t i = 0; i < in.size(); ++i)
      if (in[i].type == ActionType::B || in[i].type == ActionType::W)
        last_backward[in[i].stage] = i;
    std::vector<Action>& out = lowered.ranks[rank];
    out.clear();
    auto message = [&](ActionType type, const Action& a, int neighbour) {
      if (neighbour < 0 || neighbour > last_stage) return;
      int peer = compute_only.rank_of_stage(neighbour);
      if (peer != rank) out.push_back({type, a.stage, a.micro_batch, peer});
    };
    for (size_t i = 0; i < in.size(); ++i) {
      const Action& a = in[i];
      bool backward_input = a.type == ActionType::B || a.type == ActionType::I;
      if (a.type == ActionType::F) message(ActionType::RECV_F, a, a.stage - 1);
      if (backward_input) message(ActionType::RECV_B, a, a.stage + 1);
      out.push_back(a);
      if (a.type == ActionType::F) message(ActionType::SEND_F, a, a.stage + 1);
      if (backward_input) message(ActionType::SEND_B, a, a.stage - 1);
      auto last = last_backward.find(a.stage);
      if (last != last_backward.end() && last->second == i)
        out.push_back({ActionType::REDUCE_GRAD, a.stage, kNoMicroBatch, kNoPeer});
    }
  }
  return lowered;
}

}  // namespace strata
