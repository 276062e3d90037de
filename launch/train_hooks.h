#pragma once
// The model's unit-pass hooks during training: where a stop signal is agreed on, then forwarded
// to the ZeRO engine (gather, prefetch, reduce, free).
#include <cstdint>
#include <string>

#include "core/stop.h"
#include "models/model.h"
#include "parallel/comm.h"
#include "parallel/zero.h"

namespace strata {

// Told of every unit pass this rank runs, between ZeRO's gather and its reduction (so a span is
// the pass's compute alone): the trace's compute spans and the monitor's view of the rank.
class PassObserver {
 public:
  virtual ~PassObserver() = default;
  virtual void pass_begun(int64_t unit, UnitPass pass) = 0;
  virtual void pass_done(int64_t unit, UnitPass pass) = 0;
};

class TrainerHooks final : public BlockHooks {
 public:
  // `stop_group`: the ranks that agree on a stop at every unit boundary (the world, with one
  // pipeline stage); nullptr: none (with several stages a stop is agreed at the step's end,
  // since a stage leaving mid-step would leave its neighbours waiting for its messages).
  // `tied_head`: the head unit when it reads the tied embedding (so that is gathered first).
  TrainerHooks(ZeroEngine& z, Comm* stop_group, int64_t tied_head)
      : z_(z), stop_group_(stop_group), tied_head_(tied_head) {}

  void before(int64_t u, UnitPass pass) override {
    if (stop_group_ && pass != UnitPass::backward_weight) poll_stop(u, pass);
    if (u == tied_head_) z_.before(0, UnitPass::forward);  // the output weight is the embedding
    z_.before(u, pass);
    if (observer_) observer_->pass_begun(u, pass);
  }
  void after(int64_t u, UnitPass pass) override {
    if (observer_) observer_->pass_done(u, pass);
    z_.after(u, pass, last_);
  }
  void prefetch(int64_t u) override { z_.prefetch(u); }
  // Set by the pipeline runner around a stage's last pass of the step.
  void set_last(bool last) { last_ = last; }
  void set_observer(PassObserver* o) { observer_ = o; }

 private:
  // One 8-byte all-reduce: ranks may see a signal at different moments, and all must leave at
  // the same boundary or the others would wait in the next collective.
  void poll_stop(int64_t u, UnitPass pass) {
    int64_t sig = stop_signal();
    stop_group_->all_reduce_max_int64(&sig, 1);
    if (sig)
      throw StopRequested(static_cast<int>(sig), std::string("before the ") + unit_pass_name(pass) +
                                                     " of unit " + std::to_string(u));
  }

  ZeroEngine& z_;
  Comm* stop_group_;
  int64_t tied_head_;
  bool last_ = false;
  PassObserver* observer_ = nullptr;
};

}  // namespace strata
