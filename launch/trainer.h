#pragma once
// The Trainer wires everything from a JobConfig: data, model, optimizer, activation store,
// checkpoints, logging. One step = global batch -> micro-batches -> forward/backward each ->
// global-norm clip -> optimizer step -> metrics -> checkpoint?
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "launch/checkpoint.h"
#include "launch/data.h"
#include "launch/fault_injection.h"
#include "launch/job_config.h"
#include "launch/monitor_progress.h"
#include "launch/monitor_report.h"
#include "launch/pipeline_plan.h"
#include "launch/pipeline_runner.h"
#include "launch/step_measure.h"
#include "launch/train_hooks.h"
#include "models/model.h"
#include "offload/activation_plan.h"
#include "offload/activation_store.h"
#include "optim/lr_schedule.h"
#include "parallel/comm.h"
#include "parallel/mesh.h"
#include "parallel/pipeline_executor.h"
#include "parallel/zero.h"

namespace strata {

class MonitorHub;

struct StepResult {
  int64_t step = 0;  // 1-based optimizer step just taken
  double loss = 0;
  double grad_norm = 0;
  float lr = 0;
  double seconds = 0;
  double tokens_per_s = 0;
  double gflops = 0;     // achieved GEMM GFLOP/s over the step
  bool skipped = false;  // non-finite loss or gradient norm: no update (train.on_nonfinite: skip)
};

class Trainer {
 public:
  // `world` spans every process of the job (MPI under mpirun, else the size-1 communicator);
  // nullptr means a single process. parallel.dp * sp * pp must equal its size.
  explicit Trainer(const JobConfig& cfg, Comm* world = nullptr);
  ~Trainer();

  // The whole run: resume if asked, train to train.steps, evaluate, checkpoint. Returns the
  // exit code (0, or 128+signal when stopped by SIGTERM/SIGINT after saving).
  int run();

  StepResult train_step();
  // Mean loss over train.eval_batches micro-batches of the validation data (from its start).
  double evaluate();

  Model& model() { return *model_; }
  Mesh& mesh() { return *mesh_; }
  // The ranks holding the same parameters (dp x sp): ZeRO shards and reduces over them.
  Comm& replica_comm() { return replicas_ ? *replicas_ : mesh_->dp_comm(); }
  ZeroEngine& zero() { return *zero_; }
  const PipelinePlan& pipeline_plan() const { return *plan_; }
  const PipelineExecutor& executor() const { return *executor_; }
  // The vocabulary passes' communicator (parallel.vocab_parallel), else nullptr.
  Comm* vocab_comm() { return vocab_comm_.get(); }
  const ActivationStore& activation_store() const { return *store_; }
  int64_t step() const { return step_; }
  // Loads only the model weights of a checkpoint (evaluation, export).
  void load_weights(const CheckpointReader& ckpt);
  // Loads the parameters from a safetensors file by their Llama names (train.init_from).
  void init_weights_from(const std::string& path);
  void save_checkpoint();
  // Restores from the checkpoint root or step dir; returns false when none exists.
  bool resume(const std::string& where);

 private:
  void build_stages();
  std::string checkpoint_root() const;
  std::string metrics_path() const;
  void check_output_paths(std::ofstream& metrics);
  void run_one_step(std::ofstream& metrics, int64_t first_step);
  std::string log_line(const StepResult& r) const;
  // Progress of long work: lines every log.progress_s, and the monitor's view of this rank.
  ProgressLog progress(RankState state, const std::string& what, const std::string& unit,
                       int64_t total, bool uniform = true);
  void start_monitoring();  // the hub (launch/monitor_hub.h), when run() starts
  // Every communicator of this rank (some nullptr): their bytes are reported per axis.
  std::vector<const Comm*> comms() const;
  void write_measured() const;  // <train.run_dir>/memory_r<RANK>.json (launch/step_measure.h)
  bool is_logger() const { return mesh_->world_rank() == 0; }
  // A non-finite loss or norm: throws (on_nonfinite: stop, or max_skipped reached) or drops the
  // step's gradients.
  void handle_nonfinite_step(double loss, double sq);

  JobConfig cfg_;
  std::string config_yaml_;
  std::unique_ptr<Comm> own_world_;  // the size-1 world when none is given
  std::unique_ptr<Mesh> mesh_;
  std::unique_ptr<Comm> replicas_;  // dp x sp group when sp > 1 (else the dp group is used)
  std::unique_ptr<PipelinePlan> plan_;
  std::unique_ptr<Comm> tie_;     // tied embedding with pp > 1: first and last stage (same dp, sp)
  std::unique_ptr<Model> model_;  // the units of this rank's stages allocated
  std::unique_ptr<ZeroEngine> zero_;
  std::unique_ptr<TrainerHooks> hooks_;  // forwards the model's unit passes to zero_
  std::unique_ptr<Comm> vocab_comm_;     // vocabulary parallel: the pp group's copy for its passes
  std::unique_ptr<VocabPasses> vocab_;   // vocabulary parallel: this rank's embedding/head rows
  std::unique_ptr<TrainStageRunner> runner_;
  std::unique_ptr<PipelineExecutor> executor_;
  std::unique_ptr<ActivationStore> store_;
  std::unique_ptr<MonitorHub> hub_;     // run() only: clock, trace, TensorBoard, monitor
  StepMeasure measured_;                // peaks and bytes of the steps, for memory_r<RANK>.json
  bool plan_after_first_step_ = false;  // offload.policy auto, before its plan
  TierBandwidth swap_bandwidth_;        // auto: the swap tier's, measured at start
  std::unique_ptr<DataLoader> train_data_;
  std::unique_ptr<EvalLoader> val_data_;
  LrSchedule schedule_;
  int64_t step_ = 0;
  std::optional<StallFault> stall_;  // STRATA_FAULT (tests of the collective watchdog)
  int64_t skipped_in_row_ = 0, skipped_total_ = 0;
  int64_t last_saved_step_ = -1;  // the step of the newest checkpoint this run wrote or read  //
                                  // non-finite steps without an update
  double sgemm_peak_ = 0;         // the peak of the run's precision (bf16 or fp32 GEMM), GFLOP/s
  bool bf16_ = false;
  std::vector<int32_t> inputs_, targets_;        // [global_batch, seq_len], every rank the same
  std::vector<int32_t> my_inputs_, my_targets_;  // [global_batch/dp, seq_len/sp] this rank's share
};

}  // namespace strata
