// add_vocab_passes: where the vocabulary passes go in a compute-only schedule.
//
// The anchor of a collective is the rank that holds its data: stage 0's rank for EMBED_F(mb)
// (its output is F(0, mb)'s input) and EMBED_B(mb) (its input is B/I(0, mb)'s output), the last
// stage's rank for S(mb) (it takes F(last, mb)'s output and gives B/I(last, mb) its gradient).
// On its anchor a collective sits where its data puts it: EMBED_F(mb) just before F(0, mb), S(mb)
// right after F(last, mb), EMBED_B(mb) right after B/I(0, mb).
//
// Every other rank takes the collective at the first action boundary at or after the moment the
// anchor reaches it: it finishes the action it is running (or, idle, joins at once) and starts
// no new one before the collective (but a T that fits before the collective can start, below). The
// times are those of the schedule being built: the lists are made while they are simulated, in time
// order, so each rank's position when an anchor arrives already counts every vocabulary pass before
// it. (Placing by the compute-only schedule's times instead drifts: each micro-batch adds S + T +
// EMBED_F + EMBED_B to every rank: 1F1B at pp = 4, m = 8 with T right after S simulated a step of
// 50 that way, 44 this.) The collectives' order is the order the anchors reach them (ties: EMBED_F,
// S, EMBED_B), and every rank joins them in that order, so it is the same everywhere.
//
// T(mb) is local and nothing waits for it but the step's end. Where it goes is a choice the
// placement makes three ways and keeps the fastest (the first on a tie): right after S(mb); or
// where it costs nothing, in a wait the rank can see coming (its next action's data, or a
// collective's other ranks, arrives no sooner than the T would end) and else once the next S
// has ended (so at most one T waits: the head's saved state of two micro-batches), either never
// ahead of a collective another rank has reached or also there. Each wins somewhere: at unit
// costs (F 1, B 2, I = W = 1, S = T = 0.25), pp = 4, m = 16, 1F1B's step is 80 with T right after
// S and 76 in the waits; interleaved's 132, 130.25 and 127; ZB-H1's 59 right after S (its step
// plus the vocabulary work: nothing lost), 59.5 the third way. Deferring T into ZB-H1's W slots
// instead gave 71.25 (the W tail then carries every T).
//
// Why this cannot deadlock. The placement is a witness: it runs the lists as it builds them,
// with the simulator's rules, so the lists it returns run to the end at those very times
// (simulate_schedule checks the result and its step time, below). And the construction always
// moves: a collective is announced only by an anchor that has reached it; then every rank that
// has not joined it is running an action (which ends) or idle (and joins at once), and it
// joins it before anything but a T (which ends), so the collective completes. With no collective
// pending, the ranks' next actions are those of the compute-only schedule (which makes progress: it
// is simulated first) or an anchor's own pass, whose data comes before it on its own list, or a T,
// whose S is done and which runs at the latest when nothing else is left: some rank can always
// move.
#include "parallel/schedule_vocab.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "parallel/schedule_check.h"

namespace strata {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();
static_assert(static_cast<int>(ActionType::F) == 0 && static_cast<int>(ActionType::B) == 1 &&
                  static_cast<int>(ActionType::I) == 2 && static_cast<int>(ActionType::W) == 3,
              "Placer::slot indexes the compute types 0-3");

Action vocab_action(const Schedule& s, ActionType type, int mb) {
  const int stage = type == ActionType::S || type == ActionType::T ? s.stages - 1 : 0;
  return Action{.type = type, .stage = stage, .micro_batch = mb};
}

bool is_backward_input(const Action& a) {
  return a.type == ActionType::B || a.type == ActionType::I;
}

// Ties between events at one moment: collectives first (an anchor never waits for a pass a rank
// could have left for later), in EMBED_F, S, EMBED_B order; then T; then compute.
int tie_rank(ActionType type) {
  switch (type) {
    case ActionType::EMBED_F:
      return 0;
    case ActionType::S:
      return 1;
    case ActionType::EMBED_B:
      return 2;
    case ActionType::T:
      return 3;
    default:
      return 4;
  }
}

// Where T goes (see the file comment): right after S; in waits it fits, but never ahead of a
// collective another rank has reached; in waits it fits, that one included.
enum class TPolicy { after_s, gaps_after_collectives, gaps };

class Placer {
 public:
  Placer(const Schedule& in, const SimCosts& costs, TPolicy policy)
      : in_(in),
        costs_(costs),
        policy_(policy),
        ranks_(in.pp),
        finished_(static_cast<size_t>(4) * in.stages * in.micro_batches, kNever) {
    for (int r = 0; r < in.pp; ++r) ranks_[r].plan = with_own_passes(r);
  }

  Schedule run() {
    for (;;) {
      Event next = earliest();
      if (next.rank < 0) break;
      execute(next);
    }
    Schedule out = in_;
    for (int r = 0; r < in_.pp; ++r) {
      STRATA_CHECK(ranks_[r].next == ranks_[r].plan.size() && ranks_[r].t_pending.empty(),
                   "vocabulary placement: rank " + std::to_string(r) + " did not finish");
      out.ranks[r] = ranks_[r].out;
    }
    return out;
  }
  double makespan() const {
    double end = 0;
    for (const RankState& r : ranks_) end = std::max(end, r.free);
    return end;
  }

 private:
  struct RankState {
    std::vector<Action> plan;    // compute actions and this rank's own collectives, in order
    size_t next = 0;             // the next entry of `plan`
    std::vector<Action> out;     // the placed list
    double free = 0;             // when the rank is next free
    size_t joined = 0;           // collectives of `announced_` joined
    bool waiting = false;        // inside a collective that has not started
    std::vector<int> t_pending;  // micro-batches whose S is done and T not, in order
  };
  struct Collective {
    Action action;
    double announced = 0;  // when its anchor reached it
    double start = 0;      // the latest arrival so far
    int arrived = 0;
  };
  struct Event {
    int rank = -1;
    double time = kNever;
    ActionType type = ActionType::F;  // what the rank does: a collective, T or a compute action
  };

  // The rank's compute actions with the collectives it anchors where their data puts them.
  std::vector<Action> with_own_passes(int rank) const {
    const int last = in_.stages - 1;
    std::vector<Action> plan;
    for (const Action& a : in_.ranks[rank]) {
      if (a.type == ActionType::F && a.stage == 0)
        plan.push_back(vocab_action(in_, ActionType::EMBED_F, a.micro_batch));
      plan.push_back(a);
      if (a.type == ActionType::F && a.stage == last)
        plan.push_back(vocab_action(in_, ActionType::S, a.micro_batch));
      if (is_backward_input(a) && a.stage == 0)
        plan.push_back(vocab_action(in_, ActionType::EMBED_B, a.micro_batch));
    }
    return plan;
  }

  // Compute actions' finish times (kNever until started), by type (F, B, I, W), stage and mb.
  size_t slot(ActionType type, int stage, int mb) const {
    return (static_cast<size_t>(type) * in_.stages + stage) * in_.micro_batches + mb;
  }
  double finish_of(ActionType type, int stage, int mb) const {
    return finished_[slot(type, stage, mb)];
  }
  // The earliest a compute action's data is there (kNever while a producer has not started):
  // the simulator's dependencies of an unlowered schedule, latency between ranks.
  double ready(const Action& a) const {
    const int s = a.stage, mb = a.micro_batch;
    auto hop = [&](int from) {
      return in_.rank_of_stage(from) == in_.rank_of_stage(s) ? 0 : costs_.latency;
    };
    auto input_grad = [&](int stage) {  // B or I, whichever the stage runs (the other: kNever)
      return std::min(finish_of(ActionType::B, stage, mb), finish_of(ActionType::I, stage, mb));
    };
    switch (a.type) {
      case ActionType::F:
        return s == 0 ? 0 : finish_of(ActionType::F, s - 1, mb) + hop(s - 1);
      case ActionType::B:
      case ActionType::I:
        return std::max(finish_of(ActionType::F, s, mb),
                        s + 1 < in_.stages ? input_grad(s + 1) + hop(s + 1) : 0.0);
      default:  // W
        return finish_of(ActionType::I, s, mb);
    }
  }

  // What rank r does next and when; rank -1 when it waits for something not yet scheduled.
  Event candidate(int r) const {
    const RankState& st = ranks_[r];
    if (st.waiting) return {};
    if (!st.t_pending.empty() && t_now(r)) return {r, st.free, ActionType::T};
    if (st.joined < announced_.size())
      return {r, std::max(st.free, announced_[st.joined].announced),
              announced_[st.joined].action.type};
    if (st.next == st.plan.size()) return {};
    const Action& a = st.plan[st.next];
    if (is_vocab_collective(a.type)) return {r, st.free, a.type};
    const double at = std::max(st.free, ready(a));
    return at == kNever ? Event{} : Event{r, at, a.type};
  }

  Event earliest() const {
    Event best;
    for (int r = 0; r < in_.pp; ++r) {
      const Event e = candidate(r);
      if (e.rank < 0) continue;
      if (best.rank < 0 || e.time < best.time ||
          (e.time == best.time && tie_rank(e.type) < tie_rank(best.type)))
        best = e;
    }
    return best;
  }

  void execute(const Event& e) {
    RankState& st = ranks_[e.rank];
    if (e.type == ActionType::T) return run_t(st);
    if (st.joined < announced_.size()) return join(e.rank, e.time);
    if (is_vocab_collective(e.type)) {  // an anchor reaches its own collective
      announced_.push_back({st.plan[st.next++], e.time, e.time, 0});
      return join(e.rank, e.time);
    }
    const Action& a = st.plan[st.next++];
    st.out.push_back(a);
    st.free = e.time + action_cost(a, costs_);
    finished_[slot(a.type, a.stage, a.micro_batch)] = st.free;
  }

  void run_t(RankState& st) {
    const int mb = st.t_pending.front();
    st.t_pending.erase(st.t_pending.begin());
    st.out.push_back(vocab_action(in_, ActionType::T, mb));
    st.free += costs_.vocab_t;
  }

  // Whether rank r runs its oldest waiting T now (at st.free): when it delays nothing the rank
  // knows of (its next entry could not start before the T ends), when a second T is waiting
  // (so at most one T outlives the next S: the head's saved state of at most two micro-batches),
  // or when the rank has nothing else left.
  // A collective reached by its anchor is joined first unless the T fits before it can start
  // (and the policy allows that).
  bool t_now(int r) const {
    const RankState& st = ranks_[r];
    if (policy_ == TPolicy::after_s) return true;
    const bool collective_pending = st.joined < announced_.size();
    if (collective_pending && policy_ == TPolicy::gaps_after_collectives) return false;
    if (!collective_pending && st.t_pending.size() > 1) return true;
    if (!collective_pending && st.next == st.plan.size()) return true;
    const double bound = next_start_bound(r);
    return bound != kNever && bound >= st.free + costs_.vocab_t;
  }

  // The earliest rank r's next entry other than a T can start, as far as is known (kNever when
  // a producer it needs has not started). A collective starts no earlier than every other
  // rank's arrival, and no other rank arrives before it is free.
  double next_start_bound(int r) const {
    const RankState& st = ranks_[r];
    const bool pending = st.joined < announced_.size();
    if (pending || is_vocab_collective(st.plan[st.next].type)) {
      double bound = pending ? announced_[st.joined].start : 0;
      for (int q = 0; q < in_.pp; ++q)
        if (q != r && !ranks_[q].waiting) bound = std::max(bound, ranks_[q].free);
      return bound;
    }
    return ready(st.plan[st.next]);
  }

  // Rank r arrives at the collective it has to join next; the last arrival starts it.
  void join(int r, double time) {
    RankState& st = ranks_[r];
    Collective& c = announced_[st.joined++];
    st.out.push_back(c.action);
    st.waiting = true;
    c.start = std::max(c.start, time);
    if (++c.arrived < in_.pp) return;
    const double end = c.start + action_cost(c.action, costs_);
    for (int q = 0; q < in_.pp; ++q) {
      RankState& other = ranks_[q];
      other.free = end;
      other.waiting = false;
      if (c.action.type == ActionType::S) other.t_pending.push_back(c.action.micro_batch);
    }
  }

  const Schedule& in_;
  const SimCosts& costs_;
  const TPolicy policy_;
  std::vector<RankState> ranks_;
  std::vector<Collective> announced_;  // in the order the anchors reached them
  std::vector<double> finished_;
};

void check_input(const Schedule& s) {
  if (is_lowered(s))
    throw InputError(
        "pipeline schedule: the vocabulary passes are placed into a compute-only schedule "
        "(F, B, I, W), before lowering; this one holds SEND/RECV/REDUCE_GRAD actions");
  if (has_vocab_passes(s))
    throw InputError("pipeline schedule: already holds vocabulary passes (S, T, EMBED_F, EMBED_B)");
}

}  // namespace

Schedule add_vocab_passes(const Schedule& compute_only, const SimCosts& costs) {
  check_input(compute_only);
  simulate_schedule(compute_only, costs);  // validates it and proves it makes progress
  Schedule best;
  double best_makespan = 0;
  for (TPolicy policy : {TPolicy::after_s, TPolicy::gaps_after_collectives, TPolicy::gaps}) {
    Placer placer(compute_only, costs, policy);
    Schedule placed = placer.run();
    // The witness checked: the lists are valid, and run no slower than they were built with
    // (the placer waits at each collective; the executor, and the simulator, overlap them).
    const SimResult check = simulate_schedule(placed, costs);
    STRATA_CHECK(check.makespan <= placer.makespan() * (1 + 1e-12),
                 "vocabulary placement: the simulator is slower than the placement's step time");
    if (best.ranks.empty() || check.makespan < best_makespan)
      best = std::move(placed), best_makespan = check.makespan;
  }
  return best;
}

}  // namespace strata
