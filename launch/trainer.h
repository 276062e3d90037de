#pragma once
// The Trainer wires everything from a JobConfig: data, model, optimizer, activation store,
// checkpoints, logging. One step = global batch -> micro-batches -> forward/backward each ->
// global-norm clip -> optimizer step -> metrics -> checkpoint?
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "launch/data.h"
#include "launch/job_config.h"
#include "models/model.h"
#include "offload/activation_store.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"

namespace strata {

struct StepResult {
  int64_t step = 0;  // 1-based optimizer step just taken
  double loss = 0;
  double grad_norm = 0;
  float lr = 0;
  double seconds = 0;
  double tokens_per_s = 0;
  double gflops = 0;  // achieved GEMM GFLOP/s over the step
};

class Trainer {
 public:
  explicit Trainer(const JobConfig& cfg);
  ~Trainer();

  // The whole run: resume if asked, train to train.steps, evaluate, checkpoint. Returns the
  // exit code (0, or 128+signal when stopped by SIGTERM/SIGINT after saving).
  int run();

  StepResult train_step();
  // Mean loss over train.eval_batches micro-batches of the validation data (from its start).
  double evaluate();

  Model& model() { return *model_; }
  int64_t step() const { return step_; }
  void save_checkpoint();
  // Restores from the checkpoint root or step dir; returns false when none exists.
  bool resume(const std::string& where);

 private:
  std::string checkpoint_root() const;
  std::string log_line(const StepResult& r) const;

  JobConfig cfg_;
  std::string config_yaml_;
  std::unique_ptr<Model> model_;
  std::vector<std::unique_ptr<Optimizer>> optimizers_;  // one per parameter unit
  std::unique_ptr<ActivationStore> store_;
  std::unique_ptr<DataLoader> train_data_;
  std::unique_ptr<EvalLoader> val_data_;
  LrSchedule schedule_;
  int64_t step_ = 0;
  double sgemm_peak_ = 0;
  std::vector<int32_t> inputs_, targets_;  // [global_batch, seq_len]
};

}  // namespace strata
