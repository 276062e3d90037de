#include "launch/memory_plan_step.h"

#include <algorithm>

#include "models/block.h"
#include "models/vocab_head.h"
#include "parallel/pipeline_executor.h"
#include "parallel/send_release.h"

namespace strata {

namespace {
constexpr MemCategory kAct = MemCategory::activations;
bool in_mlp_half(const std::string& name) {
  const std::vector<std::string>& names = Block::mlp_saved_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}
// Values of one logits tile of the head over N tokens and `real` vocabulary rows: the trainer's
// tiles (Model::head_loss, VocabPasses), clamped to the problem as models/vocab_head.cpp does.
double logits_tile(int64_t N, int64_t real) {
  const VocabTiles t;
  return static_cast<double>(std::clamp<int64_t>(t.rows, 1, std::max<int64_t>(N, 1)) *
                             std::clamp<int64_t>(t.cols, 1, std::max<int64_t>(real, 1)));
}
}  // namespace

StepReplay::StepReplay(const StepReplayContext& c) : c_(c), l_(*c.ledger) {
  const JobConfig& cfg = *c_.cfg;
  N_ = cfg.train.micro_batch * (cfg.data.seq_len / c_.sp);
  D_ = cfg.model.dim;
  L_ = cfg.model.n_layers;
  head_ = L_ + 1;
  vocab_ = cfg.parallel.vocab_parallel;
}

BlockDims StepReplay::dims(int64_t block) const {
  const JobConfig& cfg = *c_.cfg;
  BlockDims d;
  d.B = cfg.train.micro_batch;
  d.T = cfg.data.seq_len / c_.sp;
  d.Tall = cfg.data.seq_len;
  d.D = D_;
  d.H = cfg.model.n_heads;
  d.dh = cfg.model.head_dim();
  d.Hkv = cfg.model.n_kv_heads;
  d.F = cfg.model.ffn_dim;
  d.chunk = cfg.model.chunk_size;
  d.mixer = cfg.model.mixer(block);
  d.bf16 = train_precision(cfg.train) == Precision::bf16;
  d.sp = c_.sp;
  d.sp_rank = c_.sp_rank;
  return d;
}

// With the vocabulary split the embedding is no stage's (launch/pipeline_runner.cpp).
bool StepReplay::is_first(int s) const {
  return !vocab_ && c_.plan->stages[static_cast<size_t>(s)].first_unit == 0;
}
bool StepReplay::has_head(int s) const {
  const StagePlan& p = c_.plan->stages[static_cast<size_t>(s)];
  return p.first_unit <= head_ && head_ < p.end_unit;
}
bool StepReplay::is_last(int s) const { return has_head(s) && !vocab_; }
int64_t StepReplay::first_block(int s) const {
  return c_.plan->stages[static_cast<size_t>(s)].first_block();
}
int64_t StepReplay::end_block(int s) const {
  return std::min<int64_t>(c_.plan->stages[static_cast<size_t>(s)].end_unit, L_ + 1) - 1;
}

void StepReplay::before(int64_t unit, UnitPass pass) {
  if (c_.plan->pp == 1 && pass != UnitPass::backward_weight) (*c_.comm)["world"] += 16;
  c_.zero->before(unit, pass);
}
void StepReplay::after(int64_t unit, UnitPass pass) { c_.zero->after(unit, pass, last_); }

// ---- the ActivationStore ------------------------------------------------------------------

// A swap write frees its buffer when it lands (offload/tier.cpp), and each save first waits for
// the oldest sets' writes until at most offload.writes_in_flight - 1 remain
// (ActivationStore::bound_writes). When the sets landed in between depends on the device's
// speed; the replay takes one of the two ends (StepReplayContext::slow_writes) and `strata plan`
// reports the range. Fast: a set's writes have landed by the next block's save. Slow: each
// lands only when a save or a read-back waits for it. With one set in flight (the default) the
// two ends are the same.
void StepReplay::retire_writes(size_t keep_sets) {
  while (writing_.size() > keep_sets) {
    for (Ledger::Id& id : writing_.front()) l_.free(id);
    writing_.pop_front();
  }
}

void StepReplay::save(int mb, int64_t block, SavedSet&& set) {
  const OffloadConfig& o = c_.cfg->offload;
  retire_writes(c_.slow_writes ? static_cast<size_t>(o.writes_in_flight - 1) : 0);
  const bool swap = (o.policy == "swap" && block < L_ - o.keep_last);
  Held h;
  if (swap) {
    std::vector<Ledger::Id> written;
    for (auto& [name, id] : set.items) {
      h.out.emplace_back(name, l_.bytes(id));
      l_.move(id, MemCategory::io);
      written.push_back(id);
    }
    writing_.push_back(std::move(written));
    set.items.clear();
  } else if (o.policy == "recompute" || o.policy == "auto") {
    // auto's first step recomputes every block (launch/activation_setup.cpp).
    for (auto it = set.items.begin(); it != set.items.end();)
      if (it->first != "x") {
        l_.free(it->second);
        it = set.items.erase(it);
      } else {
        ++it;
      }
    h.recompute = true;
  }
  h.mem = std::move(set);
  store_[{mb, block}] = std::move(h);
}

// A prefetch reads into a fresh page-aligned buffer, charged to activations when issued.
void StepReplay::prefetch(int mb, int64_t block, bool mlp_only) {
  auto it = store_.find({mb, block});
  if (it == store_.end()) return;
  if (!it->second.out.empty()) retire_writes(0);  // reading back: the writes have landed
  Held& h = it->second;
  for (auto o = h.out.begin(); o != h.out.end();) {
    if (mlp_only && !in_mlp_half(o->first)) {
      ++o;
      continue;
    }
    h.mem.items.emplace_back(o->first, l_.alloc(kAct, o->second));
    o = h.out.erase(o);
  }
}

// LASP-2's collectives of one block pass (parallel/sequence.cpp): the linear state all-gather,
// or the softmax K/V all-gather (forward: K and V as saved, so bf16 moves half) and
// reduce-scatter (backward: fp32 gradients).
static double sequence_bytes(const BlockDims& d, int64_t sp, bool forward) {
  if (sp == 1) return 0;  // alone on the sequence, neither LASP-2 nor LASP-2H communicates
  if (d.mixer == 'L') return static_cast<double>(sp * d.B * d.H * d.dh * d.dh) * 4;
  const int64_t kv = sp * 2 * d.B * d.T * d.Hkv * d.dh;
  return static_cast<double>(forward ? d.operand(kv) : kv) * 4;
}

SavedSet StepReplay::take(int mb, int64_t block) {
  prefetch(mb, block, false);  // what was not prefetched is read now
  auto it = store_.find({mb, block});
  Held h = std::move(it->second);
  store_.erase(it);
  if (!h.recompute) return std::move(h.mem);
  SavedSet rebuilt = replay_block_forward(l_, dims(block));  // the forward again
  (*c_.comm)["sp"] += sequence_bytes(dims(block), c_.sp, true);
  h.mem.clear(l_);
  return rebuilt;
}

// ---- passes (models/model_stage.cpp) ----------------------------------------------------------

void StepReplay::blocks_forward(int s, int mb) {
  const int64_t end = c_.plan->stages[static_cast<size_t>(s)].end_unit;
  if (is_first(s)) {
    before(0, UnitPass::forward);
    if (end > 1) c_.zero->prefetch(1);
    after(0, UnitPass::forward);
  }
  for (int64_t i = first_block(s); i < end_block(s); ++i) {
    const int64_t ui = i + 1;
    before(ui, UnitPass::forward);
    if (ui + 1 < end) c_.zero->prefetch(ui + 1);
    const BlockDims d = dims(i);
    // ModelStage::blocks_forward: recompute (and auto's first step) copies the input first.
    const std::string& policy = c_.cfg->offload.policy;
    SavedSet set = replay_block_forward(l_, d, policy == "recompute" || policy == "auto");
    (*c_.comm)["sp"] += sequence_bytes(d, c_.sp, true);
    save(mb, i, std::move(set));
    after(ui, UnitPass::forward);
  }
}

// Model::head_loss / vocab_head_loss over `rows` rows of the output weight (`real` of them
// vocabulary): RMSNorm's output and statistics, the partial records, one logits tile at a time
// (and the bf16 operands), then the T pass' tile; or, with the backward on a vocabulary small
// enough (vocab_head_fused_floats), the fused passes' kept logits instead of both.
// One pass over the logits (vocab_head_local or vocab_head_weight_grad): a tile of them, and in
// bf16 the cast of hn and of the tile (HeadOperands).
void StepReplay::tile_pass(int64_t real) {
  const bool half = train_precision(c_.cfg->train) == Precision::bf16;
  const double tile = logits_tile(N_, real);
  Ledger::Id L = l_.alloc(kAct, tile * 4);
  Ledger::Id h16 = half ? l_.alloc(kAct, static_cast<double>(N_ * D_) * 2) : Ledger::kNone;
  Ledger::Id t16 = half ? l_.alloc(kAct, tile * 2) : Ledger::kNone;
  for (Ledger::Id* id : {&t16, &h16, &L}) l_.free(*id);
}

// vocab_head_loss's fused passes (one shard, the whole vocabulary): every vocabulary tile's
// logits of a token tile, the exp terms of one tile (fp32; bf16 rounds them into its tile
// operand), and in bf16 the cast of hn and the tile (HeadOperands).
void StepReplay::fused_pass(int64_t real) {
  const bool half = train_precision(c_.cfg->train) == Precision::bf16;
  const double tile = logits_tile(N_, real);
  Ledger::Id L =
      l_.alloc(kAct, static_cast<double>(vocab_head_fused_floats(N_, real, VocabTiles{})) * 4);
  Ledger::Id E = half ? Ledger::kNone : l_.alloc(kAct, tile * 4);
  Ledger::Id h16 = half ? l_.alloc(kAct, static_cast<double>(N_ * D_) * 2) : Ledger::kNone;
  Ledger::Id t16 = half ? l_.alloc(kAct, tile * 2) : Ledger::kNone;
  for (Ledger::Id* id : {&t16, &h16, &E, &L}) l_.free(*id);
}

void StepReplay::head_loss(int64_t real, bool backward) {
  Ledger::Id hn = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
  Ledger::Id inv = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_)));
  Ledger::Id dhn =
      backward ? l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_))) : Ledger::kNone;
  Ledger::Id lse = l_.alloc(kAct, static_cast<double>(N_) * 4);
  Ledger::Id rec = l_.alloc(kAct, static_cast<double>(N_ * (2 * D_ + 3)) * 4);
  const bool fused = backward && vocab_head_fused_floats(N_, real, VocabTiles{}) > 0;
  if (fused)
    fused_pass(real);
  else
    tile_pass(real);
  l_.free(rec);
  if (backward && !fused) tile_pass(real);
  for (Ledger::Id* id : {&lse, &dhn, &inv, &hn}) l_.free(*id);
}

void StepReplay::forward(int s, int mb, bool last) {
  last_ = last;
  Ledger::Id a = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
  Ledger::Id b = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
  blocks_forward(s, mb);
  if (has_head(s) && !is_last(s)) {  // the vocabulary split: the final norm alone
    before(head_, UnitPass::forward);
    Ledger::Id inv = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_)));
    after(head_, UnitPass::forward);
    Ledger::Id h = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
    norm_in_[mb] = {h, inv};
  } else if (is_last(s)) {
    if (end_block(s) > first_block(s)) prefetch(mb, end_block(s) - 1, false);
    before(head_, UnitPass::backward);
    if (end_block(s) > first_block(s)) c_.zero->prefetch(end_block(s));
    dh_[mb] = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
    head_loss(c_.cfg->model.vocab_size, true);
    after(head_, UnitPass::backward);
  }
  l_.free(b);
  l_.free(a);
  last_ = false;
}

void StepReplay::block_backward(int s, int mb, int64_t i, UnitPass pass) {
  const int64_t ui = i + 1;
  const bool more = i > first_block(s);
  before(ui, pass);
  const int64_t first_unit = c_.plan->stages[static_cast<size_t>(s)].first_unit;
  if (ui - 1 >= (vocab_ && first_unit == 0 ? 1 : first_unit)) c_.zero->prefetch(ui - 1);
  SavedSet set = take(mb, i);
  const BlockDims d = dims(i);
  BackwardPoints at;
  at.mlp_done = [&] {
    if (more) prefetch(mb, i - 1, true);
  };
  at.attention_done = [&] {
    if (more) prefetch(mb, i - 1, false);
  };
  replay_block_backward(l_, d, set, at,
                        pass == UnitPass::backward_input ? &deferred_[{s, mb}][i] : nullptr);
  (*c_.comm)["sp"] += sequence_bytes(d, c_.sp, false);
  after(ui, pass);
}

void StepReplay::backward_weight(int s, int mb) {
  auto& blocks = deferred_[{s, mb}];
  for (int64_t b = end_block(s) - 1; b >= first_block(s); --b) {
    before(b + 1, UnitPass::backward_weight);
    for (Ledger::Id& id : blocks[b]) l_.free(id);
    after(b + 1, UnitPass::backward_weight);
  }
  deferred_.erase({s, mb});
  if (is_first(s)) {
    before(0, UnitPass::backward_weight);
    after(0, UnitPass::backward_weight);
    l_.free(embed_dy_[{s, mb}]);
    embed_dy_.erase({s, mb});
  }
}

void StepReplay::backward(int s, int mb, bool last, UnitPass pass) {
  last_ = last;
  Ledger::Id head_dh = Ledger::kNone;
  if (is_last(s)) {
    head_dh = dh_[mb];
    dh_.erase(mb);
  } else {
    if (end_block(s) > first_block(s)) prefetch(mb, end_block(s) - 1, false);
    if (has_head(s)) {
      before(head_, pass);
      head_dh = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
      after(head_, pass);
      l_.free(norm_in_[mb].first);
      l_.free(norm_in_[mb].second);
      norm_in_.erase(mb);
    }
  }
  Ledger::Id a = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
  Ledger::Id b = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
  for (int64_t i = end_block(s) - 1; i >= first_block(s); --i) block_backward(s, mb, i, pass);
  l_.free(head_dh);
  if (is_first(s) && pass == UnitPass::backward) {
    before(0, UnitPass::backward);
    after(0, UnitPass::backward);
  } else if (is_first(s)) {  // the embedding's gradient is a weight gradient: W's
    embed_dy_[{s, mb}] = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_ * D_)));
  }
  l_.free(b);
  l_.free(a);
  last_ = false;
}

// ---- the executor (parallel/pipeline_executor.cpp) -------------------------------------------

Ledger::Id StepReplay::comm_buffer() {
  return l_.alloc(MemCategory::comm, Ledger::floats(static_cast<double>(N_ * D_)));
}

Ledger::Id StepReplay::take_input(Dir d, int stage, int mb) {
  auto it = inbox_.find({d, {stage, mb}});
  if (it == inbox_.end()) return Ledger::kNone;
  const Ledger::Id id = it->second;
  inbox_.erase(it);
  return id;
}

void StepReplay::hand_over(Dir d, int to, int mb, Ledger::Id buf) {
  auto& box = c_.plan->schedule.rank_of_stage(to) == c_.pp_rank ? inbox_ : outbox_;
  box[{d, {to, mb}}] = buf;
}

// F: its input from the inbox (or the vocabulary passes' embedding), its output to the next
// stage (or to S under the split).
void StepReplay::execute_forward(int s, int mb, bool last) {
  const int last_stage = c_.plan->schedule.stages - 1;
  const bool has_in = s != 0 || vocab_, has_out = s != last_stage || vocab_;
  Ledger::Id in = Ledger::kNone;
  if (s == 0 && vocab_) {
    in = comm_buffer();  // vocab_result: the summed embedding, from EMBED_F's buffer
    l_.free(embeds_[mb]);
    embeds_.erase(mb);
  } else if (has_in) {
    in = take_input(kForward, s, mb);
  }
  Ledger::Id out = has_out ? comm_buffer() : Ledger::kNone;
  forward(s, mb, last);
  if (s != last_stage)
    hand_over(kForward, s + 1, mb, out);
  else if (vocab_)
    inbox_[{kVocab, {last_stage, mb}}] = out;
  l_.free(in);
}

// B (and I, replayed as B): its output gradient from the inbox (or S's dL/dhn), its input
// gradient to the previous stage (or to EMBED_B).
void StepReplay::execute_backward(int s, int mb, bool last, UnitPass pass) {
  const int last_stage = c_.plan->schedule.stages - 1;
  const bool has_in = s != 0 || vocab_, has_out = s != last_stage || vocab_;
  Ledger::Id dy = Ledger::kNone;
  if (s == last_stage && vocab_) {
    dy = comm_buffer();
    vocab_finished_head(mb);  // vocab_result: dL/dhn, then the records go
    l_.free(heads_[mb].partial);
    if (heads_[mb].hn == Ledger::kNone) {
      l_.free(heads_[mb].lse);
      heads_.erase(mb);
    }
  } else if (has_out) {
    dy = take_input(kBackward, s, mb);
  }
  Ledger::Id dx = has_in ? comm_buffer() : Ledger::kNone;
  backward(s, mb, last, pass);
  if (s != 0)
    hand_over(kBackward, s - 1, mb, dx);
  else if (vocab_)
    inbox_[{kEmbedGrad, {0, mb}}] = dx;
  l_.free(dy);
}

// The last F and the last B/W of each stage in the list: the `last` flags (the vocabulary
// passes reduce at the step's end, whatever theirs say).
static std::vector<bool> last_passes(const std::vector<Action>& acts) {
  std::vector<bool> last(acts.size(), false);
  std::map<std::pair<int, int>, bool> seen;
  for (size_t i = acts.size(); i-- > 0;) {
    const Action& a = acts[i];
    int kind = -1;
    if (a.type == ActionType::F) kind = 0;
    if (a.type == ActionType::B || a.type == ActionType::W) kind = 1;
    if (kind >= 0 && !seen[{kind, a.stage}]) last[i] = seen[{kind, a.stage}] = true;
  }
  return last;
}

void StepReplay::run() {
  const std::vector<Action>& acts = c_.plan->schedule.ranks.at(static_cast<size_t>(c_.pp_rank));
  const std::vector<bool> last = last_passes(acts);
  const std::vector<size_t> release = send_release_points(c_.plan->schedule, c_.pp_rank);
  std::vector<size_t> recvs;
  for (size_t i = 0; i < acts.size(); ++i)
    if (acts[i].type == ActionType::RECV_F || acts[i].type == ActionType::RECV_B)
      recvs.push_back(i);
  size_t next_post = 0, consumed = 0;
  const double message = Ledger::floats(static_cast<double>(N_ * D_));
  for (size_t i = 0; i < acts.size(); ++i) {
    while (next_post < recvs.size() && next_post < consumed + PipelineExecutor::kPostAhead) {
      const Action& r = acts[recvs[next_post++]];
      posted_[{r.type == ActionType::RECV_B ? kBackward : kForward, {r.stage, r.micro_batch}}] =
          comm_buffer();
    }
    const Action& a = acts[i];
    const int s = a.stage, mb = a.micro_batch;
    switch (a.type) {
      case ActionType::F:
        execute_forward(s, mb, last[i]);
        break;
      case ActionType::B:
      case ActionType::I:
        execute_backward(s, mb, a.type == ActionType::B && last[i],
                         a.type == ActionType::B ? UnitPass::backward : UnitPass::backward_input);
        break;
      case ActionType::W:
        last_ = last[i];
        backward_weight(s, mb);
        last_ = false;
        break;
      case ActionType::SEND_F:
      case ActionType::SEND_B: {
        const bool bwd = a.type == ActionType::SEND_B;
        const int to = bwd ? s - 1 : s + 1;
        auto it = outbox_.find({bwd ? kBackward : kForward, {to, mb}});
        if (it != outbox_.end()) {
          sending_.emplace_back(release[i], it->second);
          outbox_.erase(it);
        }
        (*c_.comm)["pp"] += message;
        break;
      }
      case ActionType::RECV_F:
      case ActionType::RECV_B: {
        const Key k{a.type == ActionType::RECV_B ? kBackward : kForward, {s, mb}};
        inbox_[k] = posted_[k];
        posted_.erase(k);
        ++consumed;
        (*c_.comm)["pp"] += message;
        break;
      }
      case ActionType::REDUCE_GRAD: {
        // The stage's units as its ModelStage has them: not the embedding under the split.
        const StagePlan& p = c_.plan->stages[static_cast<size_t>(s)];
        c_.zero->finish_grads(vocab_ && p.first_unit == 0 ? 1 : p.first_unit, p.end_unit);
        break;
      }
      default:
        vocab_action(a, last[i]);
    }
    // poll_sends: the sends the schedule proves received by this action go.
    for (auto it = sending_.begin(); it != sending_.end();)
      if (it->first <= i) {
        l_.free(it->second);
        it = sending_.erase(it);
      } else {
        ++it;
      }
  }
  if (vocab_) finish_vocab();
  for (auto& [at, id] : sending_) l_.free(id);  // finish_sends
}

// ---- the vocabulary passes (launch/vocab_passes.cpp)
// ----------------------------------------

void StepReplay::vocab_finished_head(int mb) {
  VocabHead& h = heads_[mb];
  if (h.lse != Ledger::kNone) return;
  h.lse = l_.alloc(kAct, Ledger::floats(static_cast<double>(N_)));
  if (c_.pp_rank != c_.plan->pp - 1) l_.free(h.partial);  // the last rank still forms dL/dhn
}

void StepReplay::vocab_action(const Action& a, bool /*last*/) {
  const int mb = a.micro_batch, P = c_.plan->pp, r = c_.pp_rank;
  const int64_t V = c_.cfg->model.vocab_size, rows = vocab_shard_rows(V, P);
  const int64_t real = std::clamp<int64_t>(V - r * rows, 0, rows);
  const int64_t out = c_.cfg->model.tie_embeddings ? 0 : L_ + 2;  // Model::output_unit()
  const double nd = Ledger::floats(static_cast<double>(N_ * D_));
  auto& bytes = (*c_.comm)["vocab"];
  switch (a.type) {
    case ActionType::EMBED_F:
      before(0, UnitPass::forward);
      embeds_[mb] = comm_buffer();
      after(0, UnitPass::forward);
      bytes += 2 * nd;  // the all-reduce of the partial embeddings
      return;
    case ActionType::S: {
      Ledger::Id in = take_input(kVocab, c_.plan->schedule.stages - 1, mb);
      VocabHead& h = heads_[mb];
      h.hn = l_.alloc(kAct, nd);
      bytes += nd;  // hn broadcast from the last stage
      c_.zero->before(out, UnitPass::backward_input);
      h.partial = l_.alloc(kAct, static_cast<double>(N_ * (2 * D_ + 3)) * 4);
      tile_pass(real);
      c_.zero->after(out, UnitPass::backward_input, false);
      bytes += 2 * static_cast<double>(N_ * (2 * D_ + 3)) * 4;  // the records' all-reduce
      l_.free(in);
      return;
    }
    case ActionType::T: {
      vocab_finished_head(mb);
      VocabHead& h = heads_[mb];
      c_.zero->before(out, UnitPass::backward);
      tile_pass(real);
      c_.zero->after(out, UnitPass::backward, false);
      l_.free(h.hn);
      if (h.partial == Ledger::kNone) {
        l_.free(h.lse);
        heads_.erase(mb);
      }
      return;
    }
    case ActionType::EMBED_B: {
      Ledger::Id dx = take_input(kEmbedGrad, 0, mb);
      embed_grads_[mb] = comm_buffer();
      bytes += nd;  // stage 0's input gradient broadcast
      if (r == 0) {
        c_.zero->before(0, UnitPass::backward_weight);
        c_.zero->after(0, UnitPass::backward_weight, false);
      }
      l_.free(dx);
      return;
    }
    default:
      return;
  }
}

// VocabPasses::finish_step: the other ranks' partial embeddings and the broadcast gradients
// are held to the step's end.
void StepReplay::finish_vocab() {
  for (auto& [mb, id] : embeds_) l_.free(id);
  embeds_.clear();
  for (auto& [mb, id] : embed_grads_) {
    if (c_.pp_rank != 0) {
      c_.zero->before(0, UnitPass::backward_weight);
      c_.zero->after(0, UnitPass::backward_weight, false);
    }
    l_.free(id);
  }
  embed_grads_.clear();
}

}  // namespace strata
