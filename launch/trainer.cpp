#include "launch/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/peak.h"
#include "core/stop.h"
#include "core/trace.h"
#include "core/weights_epoch.h"
#include "launch/activation_setup.h"
#include "launch/checkpoint.h"
#include "launch/fault_injection.h"
#include "launch/init_from.h"
#include "launch/monitor_hub.h"
#include "launch/stop_signals.h"
#include "launch/train_checkpoint.h"
#include "optim/grad_norm.h"
#include "parallel/self_comm.h"
#include "parallel/watchdog.h"

namespace strata {

namespace fs = std::filesystem;

namespace {

OptimizerOptions optimizer_options(const OptimConfig& o) {
  OptimizerOptions opt;
  opt.beta1 = o.beta1;
  opt.beta2 = o.beta2;
  opt.eps = o.eps;
  opt.weight_decay = o.weight_decay;
  opt.momentum = o.momentum;
  return opt;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

Trainer::Trainer(const JobConfig& cfg, Comm* world)
    : cfg_(cfg), config_yaml_(dump_job_config(cfg)) {
  if (!world) {
    own_world_ = std::make_unique<SelfComm>("world");
    world = own_world_.get();
  }
  // Every collective from here on waits under the watchdog's deadline (README: "When a rank is
  // lost"); start-up and the first step get the longer one.
  Watchdog& wd = Watchdog::instance();
  wd.set_timeout(static_cast<double>(cfg_.train.collective_timeout_s));
  wd.set_run_dir(cfg_.train.run_dir);
  wd.set_phase(WatchPhase::startup);
  stall_ = fault_from_env();  // test-only (launch/fault_injection.h)
  // Checked before any work: a layout that does not match the processes is an input error.
  mesh_ = std::make_unique<Mesh>(*world, static_cast<int>(cfg_.parallel.pp),
                                 static_cast<int>(cfg_.parallel.dp),
                                 static_cast<int>(cfg_.parallel.sp));
  // The plan first: a job the pipeline can't serve is refused before any allocation.
  plan_ = std::make_unique<PipelinePlan>(plan_pipeline(cfg_));
  if (cfg_.data.seq_len % cfg_.parallel.sp != 0)
    throw InputError(cfg_.source + ": data.seq_len (" + std::to_string(cfg_.data.seq_len) +
                     ") must be divisible by parallel.sp (" + std::to_string(cfg_.parallel.sp) +
                     "): each sequence-parallel rank takes an equal contiguous chunk");
  if (mesh_->sp() > 1)
    replicas_ = mesh_->world().split(mesh_->pp_rank(), mesh_->world_rank(), "dp*sp");
  set_log_rank(mesh_->world_rank(), mesh_->world_size());
  // Threads per rank: train.threads when set; otherwise the launcher's choice stands (the CLI
  // sets cores on the node / ranks on the node unless OMP_NUM_THREADS is given).
  if (cfg_.train.threads > 0) omp_set_num_threads(static_cast<int>(cfg_.train.threads));

  // The cap applies to everything this rank allocates from here on (0 = none).
  MemoryTracker::instance().set_limit(cfg_.train.max_memory_mb << 20);
  build_stages();
  {
    ActivationSetup a = make_activation_store(cfg_, static_cast<int>(mesh_->world_rank()));
    store_ = std::move(a.store);
    plan_after_first_step_ = a.plan_after_first_step;
    swap_bandwidth_ = a.bandwidth;
  }
  runner_ = std::make_unique<TrainStageRunner>(*model_, *plan_, mesh_->pp_rank(), *zero_, *hooks_,
                                               *store_, vocab_.get());
  executor_ = std::make_unique<PipelineExecutor>(plan_->schedule, mesh_->pp_comm());
  train_data_ = std::make_unique<DataLoader>(cfg_.data.train, cfg_.data.seq_len,
                                             cfg_.model.vocab_size, cfg_.train.seed);
  if (!cfg_.data.val.empty())
    val_data_ =
        std::make_unique<EvalLoader>(cfg_.data.val, cfg_.data.seq_len, cfg_.model.vocab_size);
  schedule_.kind = cfg_.optim.schedule;
  schedule_.lr = cfg_.optim.lr;
  schedule_.min_lr = cfg_.optim.min_lr;
  schedule_.warmup_steps = cfg_.optim.warmup_steps;
  schedule_.total_steps = cfg_.train.steps;
  schedule_.validate();
  inputs_.resize(static_cast<size_t>(cfg_.train.global_batch * cfg_.data.seq_len));
  targets_.resize(inputs_.size());
  my_inputs_.resize(inputs_.size() / static_cast<size_t>(mesh_->dp() * mesh_->sp()));
  my_targets_.resize(my_inputs_.size());
}

Trainer::~Trainer() = default;

// This rank's part of the model: the units of its pipeline stages (all of them with pp = 1),
// their ZeRO engine over the stage's replicas, and the hooks between the two.
void Trainer::build_stages() {
  const bool tied = cfg_.model.tie_embeddings, vocab = cfg_.parallel.vocab_parallel;
  const int pp = mesh_->pp(), r = mesh_->pp_rank();
  // With the vocabulary split the LM head (untied) is a unit of its own after the head's norm.
  const int64_t head = cfg_.model.n_layers + 1, U = head + 1 + (vocab && !tied ? 1 : 0);
  std::vector<bool> held(static_cast<size_t>(U), false);
  for (int s : plan_->stages_of_rank(r))
    for (int64_t u = plan_->stages[s].first_unit; u < plan_->stages[s].end_unit; ++u)
      held[static_cast<size_t>(u)] = true;
  const bool holds_head = held[static_cast<size_t>(head)], owns_embedding = held.front();
  // Vocabulary parallel: every rank holds its rows of the embedding and of the LM head.
  if (vocab) {
    held.front() = true;
    if (!tied) held.back() = true;
  }
  // Tied with several stages: the last stage keeps a copy of the embedding (its output weight);
  // the two copies' gradients are summed over the tie group, so both take the same update.
  const bool tie_copy = tied && !vocab;
  if (tie_copy && holds_head) held.front() = true;
  if (tie_copy && pp > 1) {
    const bool ends = r == 0 || r == pp - 1;
    tie_ = mesh_->world().split(ends ? mesh_->dp_rank() * mesh_->sp() + mesh_->sp_rank() : -1, r,
                                "tie");
  }
  VocabSplit split;
  if (vocab) split = VocabSplit{true, r, pp};
  ModelConfig mc = cfg_.model;
  mc.precision = train_precision(cfg_.train);
  model_ = std::make_unique<Model>(mc, held, split);
  model_->init(cfg_.train.seed);
  std::vector<ZeroUnit> units;
  for (int64_t u = 0; u < U; ++u) {
    if (!held[static_cast<size_t>(u)]) continue;
    ParamUnit& unit = model_->units()[u];
    ZeroUnit z{u, &unit.params(), &unit.grads(), unit.numel(), unit.decay_segments()};
    z.on_release = [&unit] { unit.drop_bf16(); };
    z.bf16_copy = [&unit] { return unit.bf16_to_rewrite(); };
    z.bf16_rewritten = [&unit] { unit.bf16_rewritten(); };
    z.pinned = tie_copy && u == 0 && holds_head;  // the head reads the embedding too
    z.replica = tie_copy && u == 0 && !owns_embedding;
    z.tie = u == 0 ? tie_.get() : nullptr;
    units.push_back(std::move(z));
  }
  ZeroOptions zo;
  zo.reduce_once_per_step = pp > 1;
  zero_ = std::make_unique<ZeroEngine>(replica_comm(), static_cast<int>(cfg_.parallel.zero_stage),
                                       std::move(units), cfg_.optim.name,
                                       optimizer_options(cfg_.optim), zo);
  hooks_ = std::make_unique<TrainerHooks>(*zero_, pp == 1 ? &mesh_->world() : nullptr,
                                          tie_copy && holds_head ? head : -1);
  if (vocab) {
    vocab_comm_ = mesh_->pp_comm().split(0, r, "vocab");
    vocab_ = std::make_unique<VocabPasses>(*model_, *vocab_comm_, pp - 1, *hooks_, VocabTiles{},
                                           cfg_.parallel.vocab_overlap);
  }
}

std::string Trainer::checkpoint_root() const {
  return cfg_.checkpoint.dir.empty() ? cfg_.train.run_dir + "/checkpoints" : cfg_.checkpoint.dir;
}

StepResult Trainer::train_step() {
  const auto t0 = Clock::now();
  const int64_t flops0 = gemm_flops() + gemm_bf16_flops();
  const int64_t T = cfg_.data.seq_len, mb = cfg_.train.micro_batch, dp = mesh_->dp();
  // Every rank loads the same global batch and takes its contiguous share of the sequences.
  const LoaderState batch_start = train_data_->state();  // a step stopped part-way reloads it
  train_data_->next_batch(cfg_.train.global_batch, inputs_.data(), targets_.data());
  Watchdog::instance().set_step(step_ + 1);
  if (stall_) inject_stall(*stall_, mesh_->world_rank(), step_ + 1);
  int64_t counted = 0;
  for (int32_t t : targets_) counted += t >= 0;
  STRATA_CHECK(counted > 0, "a global batch with no counted targets");
  // The loss is normalised by the token count of the whole global batch (MODEL.md), so
  // micro-batches and ranks sum to the gradient of the same loss.
  const float loss_scale = 1.f / static_cast<float>(counted);

  // This rank's share: sequences of its dp index, the contiguous chunk of its sp index.
  const int64_t local = cfg_.train.global_batch / dp, n_micro = local / mb;
  const int64_t n = T / mesh_->sp(), pos0 = mesh_->sp_rank() * n;
  for (int64_t b = 0; b < local; ++b) {
    const int64_t src = (mesh_->dp_rank() * local + b) * T + pos0;
    std::copy_n(inputs_.begin() + src, n, my_inputs_.begin() + b * n);
    std::copy_n(targets_.begin() + src, n, my_targets_.begin() + b * n);
  }
  STRATA_CHECK(n_micro == plan_->micro_batches, "the pipeline plan's micro-batch count");
  const BlockShape shape{mb, n, pos0, &mesh_->sp_comm()};
  try {
    zero_->begin_step();
    runner_->begin_step(shape, loss_scale, my_inputs_.data(), my_targets_.data());
    executor_->run_step(*runner_);
  } catch (const StopRequested&) {
    // No update happened: parameters and optimizer states are those of step_, and the batch
    // goes back to the loader, so a checkpoint now resumes exactly where an unstopped run was.
    train_data_->restore(batch_start);
    throw;
  }
  STRATA_CHECK(store_->empty() && runner_->idle(),
               "activations left in the store after the backward pass");
  // The loss comes from the last stage; the gradient norm covers every stage.
  double loss_sum = runner_->loss_sum();
  replica_comm().all_reduce_sum_double(&loss_sum, 1);
  if (mesh_->pp() > 1)
    mesh_->pp_comm().broadcast_bytes(&loss_sum, sizeof loss_sum, mesh_->pp() - 1);
  double sq = zero_->grad_sq_norm();
  if (mesh_->pp() > 1) mesh_->pp_comm().all_reduce_sum_double(&sq, 1);
  const float lr = schedule_.at(step_);
  // The loss and the norm are global (all-reduced), so every rank takes the same branch.
  const double loss = loss_sum / static_cast<double>(counted);
  const bool finite = std::isfinite(loss) && std::isfinite(sq);
  if (finite) {
    const double t_opt = trace_now_us();
    zero_->step(lr, clip_coefficient(sq, cfg_.optim.grad_clip));
    trace_span(TraceTrack::optimizer, "optimizer step", t_opt);
    skipped_in_row_ = 0;
  } else {
    handle_nonfinite_step(loss, sq);  // throws under on_nonfinite: stop
  }
  ++step_;
  Watchdog::instance().set_phase(WatchPhase::train);  // the first step's long deadline is over
  if (plan_after_first_step_) {
    // After the optimizer step, so its state is in the peaks. Each rank plans from its own
    // measurements (every plan trains identically; plans differ only in time and memory).
    PlanScope scope;
    if (mesh_->pp() > 1) {
      for (int s : plan_->stages_of_rank(mesh_->pp_rank()))
        for (int64_t b = plan_->stages[s].first_block();
             b < plan_->stages[s].end_block(cfg_.model.n_layers); ++b)
          scope.blocks.push_back(b);
      scope.in_flight = plan_->sim.peak_in_flight.at(static_cast<size_t>(mesh_->pp_rank()));
    }
    plan_activation_policies(cfg_, *store_, swap_bandwidth_, MemoryTracker::instance().snapshot(),
                             scope);
    plan_after_first_step_ = false;
  }

  StepResult r;
  r.step = step_;
  r.loss = loss;
  r.skipped = !finite;
  r.grad_norm = std::sqrt(sq);
  r.lr = lr;
  r.seconds = seconds_since(t0);
  r.tokens_per_s = static_cast<double>(cfg_.train.global_batch * T) / r.seconds;
  r.gflops = static_cast<double>(gemm_flops() + gemm_bf16_flops() - flops0) / r.seconds * 1e-9;
  return r;
}

void Trainer::handle_nonfinite_step(double loss, double sq) {
  const std::string what = "step " + std::to_string(step_ + 1) + ": " +
                           (std::isfinite(loss) ? "the global gradient norm" : "the loss") +
                           " is not finite (loss " + fmt("%.6g", loss) + ", gnorm " +
                           fmt("%.6g", std::sqrt(sq)) + ")";
  if (cfg_.train.on_nonfinite == "stop")
    throw StrataError(what +
                      "; the update was not applied and nothing was saved. Lower optim.lr, "
                      "set optim.grad_clip, check the data, or set train.on_nonfinite: skip");
  zero_->skip_step();
  ++skipped_in_row_;
  ++skipped_total_;
  log_warn(what + ": update skipped on every rank (" + std::to_string(skipped_in_row_) +
           " in a row, " + std::to_string(skipped_total_) + " in all)");
  if (skipped_in_row_ >= cfg_.train.max_skipped)
    throw StrataError(what + ": " + std::to_string(skipped_in_row_) +
                      " steps in a row were skipped (train.max_skipped = " +
                      std::to_string(cfg_.train.max_skipped) +
                      "); stopping. Lower optim.lr or check the data");
}

double Trainer::evaluate() {
  if (!val_data_) return NAN;
  val_data_->reset();
  const int64_t mb = cfg_.train.micro_batch, T = cfg_.data.seq_len;
  const int64_t n = T / mesh_->sp(), pos0 = mesh_->sp_rank() * n;
  std::vector<int32_t> in(static_cast<size_t>(mb * T)), tg(in.size());
  std::vector<int32_t> my_in(static_cast<size_t>(mb * n)), my_tg(my_in.size());
  // Micro-batch b is evaluated by data-parallel rank b % dp (each sequence-parallel rank its
  // chunk) and the sums meet in an all-reduce. Every rank runs the same number of forwards so
  // that ZeRO-3 gathers and the sequence-parallel collectives stay matched.
  double sums[2] = {0, 0};  // loss, counted targets
  const int64_t dp = mesh_->dp(), rounds = (cfg_.train.eval_batches + dp - 1) / dp;
  ProgressLog shown = progress(RankState::evaluating, "evaluation", "batches", rounds * dp);
  for (int64_t b = 0; b < rounds * dp; ++b) {
    val_data_->next_batch(mb, in.data(), tg.data());
    if (b > 0) shown.update(b);
    if (b % dp != mesh_->dp_rank()) continue;
    for (int64_t i = 0; i < mb; ++i) {
      std::copy_n(in.begin() + i * T + pos0, n, my_in.begin() + i * n);
      std::copy_n(tg.begin() + i * T + pos0, n, my_tg.begin() + i * n);
    }
    const int64_t c = std::count_if(my_tg.begin(), my_tg.end(), [](int32_t t) { return t >= 0; });
    const double l = runner_->eval_micro_batch(
        mesh_->pp_comm(), BlockShape{mb, n, pos0, &mesh_->sp_comm()}, my_in.data(), my_tg.data());
    if (b < cfg_.train.eval_batches) {  // padding rounds only keep the collectives matched
      sums[0] += l;
      sums[1] += static_cast<double>(c);
    }
  }
  shown.update(rounds * dp);
  replica_comm().all_reduce_sum_double(sums, 2);
  // The loss sum is the last stage's; every stage counted the same targets.
  if (mesh_->pp() > 1) mesh_->pp_comm().broadcast_bytes(sums, sizeof sums, mesh_->pp() - 1);
  return sums[0] / sums[1];
}

void Trainer::save_checkpoint() {
  const WatchPhaseScope io(WatchPhase::checkpoint);  // shard writes may take long on slow storage
  // Every rank writes the elements it owns of every unit: parameters and optimizer states.
  std::vector<TensorSlice> slices;
  auto& units = model_->units();
  for (int64_t u = 0; u < zero_->num_units(); ++u) {
    if (zero_->unit(u).replica) continue;  // its owner stage saves it
    const ParamUnit& unit = units[zero_->unit_id(u)];
    const ShardRange own = zero_->owned(u), opt = zero_->optimizer_range(u);
    auto add = [&](std::vector<TensorSlice> more) {
      slices.insert(slices.end(), more.begin(), more.end());
    };
    add(unit_slices(unit, zero_->owned_params(u), own.begin, own.end));
    for (const auto& [name, buf] : zero_->optimizer(u).state())
      add(unit_slices(unit, buf->data() + (own.begin - opt.begin), own.begin, own.end, "." + name));
  }
  const LoaderState ls = train_data_->state();
  const std::map<std::string, std::string> state = {
      {"step", std::to_string(step_)},
      {"optim.steps", std::to_string(zero_->optimizer(0).steps())},
      {"loader.epoch", std::to_string(ls.epoch)},
      {"loader.index", std::to_string(ls.index)},
      {"seed", std::to_string(cfg_.train.seed)},
      {"parallel.dp", std::to_string(mesh_->dp())},
      {"parallel.sp", std::to_string(mesh_->sp())},
      {"parallel.pp", std::to_string(mesh_->pp())},
      {"parallel.schedule", plan_->schedule_name},
      {"parallel.zero_stage", std::to_string(zero_->stage())},
  };
  Comm& world = mesh_->world();
  ProgressLog shown = progress(RankState::checkpointing,
                               "checkpoint of step " + std::to_string(step_), "phases", 3, false);
  const auto t_write = Clock::now();
  write_shard(checkpoint_root(), step_, world.rank(), slices);
  int64_t bytes = 0;
  for (const TensorSlice& s : slices) bytes += s.numel * static_cast<int64_t>(sizeof(float));
  const double write_s = seconds_since(t_write);
  shown.update(
      1,
      "shard written: " + format_bytes(bytes) + " in " + format_duration(write_s) + " (" +
          format_bytes(static_cast<int64_t>(static_cast<double>(bytes) / std::max(write_s, 1e-9))) +
          "/s); waiting for every rank's");
  world.barrier();  // every shard and index is durable before the manifest names them
  shown.update(2, "every shard is durable; committing the manifest");
  if (world.rank() == 0)
    commit_checkpoint(checkpoint_root(), step_, world.size(), state, config_yaml_,
                      cfg_.checkpoint.keep_last);
  world.barrier();
  shown.update(3, "committed");
  last_saved_step_ = step_;
  log_info("checkpoint: saved step " + std::to_string(step_) + " to " + checkpoint_root() + "/" +
           step_dir_name(step_));
}

void Trainer::load_weights(const CheckpointReader& ckpt) {
  auto& units = model_->units();
  check_checkpoint_tensors(ckpt, units);
  for (int64_t u = 0; u < zero_->num_units(); ++u) {
    ParamUnit& unit = units[zero_->unit_id(u)];
    // Stages 0-2 hold whole parameters; stage 3 only its shard.
    if (zero_->stage() == 3) {
      const ShardRange own = zero_->owned(u);
      read_unit_range(ckpt, unit, zero_->owned_params_mut(u), own.begin, own.end);
    } else {
      read_unit_range(ckpt, unit, unit.params().data(), 0, unit.numel());
    }
  }
  bump_weights_epoch();  // the bf16 weight copies, if any, are of the old weights
}

void Trainer::init_weights_from(const std::string& path) {
  const int64_t n = init_from_safetensors(path, *model_, *zero_);
  log_info("init_from: " + std::to_string(n) + " tensors from " + path +
           " (optimizer state fresh)");
}

bool Trainer::resume(const std::string& where) {
  std::string dir = where;
  if (!fs::exists(fs::path(where) / "manifest.yaml")) {
    auto latest = find_latest(where);
    if (!latest) return false;
    dir = *latest;
  }
  CheckpointReader ckpt(dir);
  load_weights(ckpt);
  auto& units = model_->units();
  const int64_t steps = std::stoll(ckpt.state("optim.steps"));
  for (int64_t u = 0; u < zero_->num_units(); ++u) {
    const ShardRange opt = zero_->optimizer_range(u);
    for (const auto& [name, buf] : zero_->optimizer(u).state())
      read_unit_range(ckpt, units[zero_->unit_id(u)], buf->data(), opt.begin, opt.end, "." + name);
    zero_->optimizer(u).set_steps(steps);
  }
  step_ = std::stoll(ckpt.state("step"));
  train_data_->restore(
      LoaderState{std::stoll(ckpt.state("loader.epoch")), std::stoll(ckpt.state("loader.index"))});
  log_info("resumed from " + dir + " at step " + std::to_string(step_) + " (written by " +
           std::to_string(ckpt.world()) + " ranks)");
  if (step_ >= cfg_.train.steps)
    log_warn("the checkpoint is at step " + std::to_string(step_) + ", at or past train.steps = " +
             std::to_string(cfg_.train.steps) + ": nothing to train");
  return true;
}

std::string Trainer::log_line(const StepResult& r) const {
  std::ostringstream os;
  os << "step " << r.step << "/" << cfg_.train.steps << " | loss " << fmt("%.4f", r.loss)
     << " | gnorm " << fmt("%.3f", r.grad_norm) << " | lr " << fmt("%.2e", r.lr) << " | "
     << fmt("%.1f", r.seconds * 1e3) << " ms | " << fmt("%.0f", r.tokens_per_s) << " tok/s | "
     << fmt("%.1f", r.gflops) << " GFLOP/s (" << fmt("%.1f", 100.0 * r.gflops / sgemm_peak_)
     << "% of " << (bf16_ ? "bf16" : "sgemm") << " peak " << fmt("%.0f", sgemm_peak_)
     << ") | peak mem " << format_memory(MemoryTracker::instance().snapshot());
  if (hub_) os << " | " << hub_->progress_text();
  return os.str();
}

namespace {

// JSON has no NaN or infinity: a non-finite value is written as null.
std::string json_number(const char* f, double v) { return std::isfinite(v) ? fmt(f, v) : "null"; }

std::string step_json(const StepResult& r) {
  std::ostringstream js;
  js << "{\"step\":" << r.step << ",\"loss\":" << json_number("%.9g", r.loss)
     << ",\"grad_norm\":" << json_number("%.6g", r.grad_norm)
     << ",\"lr\":" << json_number("%.6g", r.lr) << ",\"ms\":" << fmt("%.3f", r.seconds * 1e3)
     << ",\"tokens_per_s\":" << fmt("%.1f", r.tokens_per_s)
     << ",\"gflops\":" << fmt("%.2f", r.gflops);
  if (r.skipped) js << ",\"skipped\":true";
  return js.str();
}

// A directory the run writes into: created if missing, then it must be a writable directory.
void check_output_dir(const std::string& key, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw InputError(key + ": cannot use '" + dir + "' as a directory: " +
                     (ec ? ec.message() : "it exists and is not a directory"));
  if (access(dir.c_str(), W_OK | X_OK) != 0)
    throw InputError(key + ": directory '" + dir + "' is not writable: " + std::strerror(errno));
}

}  // namespace

std::string Trainer::metrics_path() const {
  return cfg_.log.metrics_file.empty() ? cfg_.train.run_dir + "/metrics.jsonl"
                                       : cfg_.log.metrics_file;
}

// Every output path is checked before step 1, so a bad one fails in seconds, not at the first
// save (or never, as metrics silently not written did).
void Trainer::check_output_paths(std::ofstream& metrics) {
  // What can be refused without creating anything comes first.
  const std::string path = metrics_path();
  std::error_code ec;
  if (is_logger() && fs::is_directory(path, ec))
    throw InputError("log.metrics_file: '" + path + "' is a directory; expected a file path");
  const fs::path parent = fs::path(path).parent_path();
  if (is_logger() && !cfg_.log.metrics_file.empty() && !parent.empty() &&
      !fs::is_directory(parent, ec))
    throw InputError("log.metrics_file: the directory of '" + path +
                     "' does not exist (it is not created for you)");
  check_checkpoint_root_writable(checkpoint_root());  // every rank writes its shard there
  if (!is_logger()) return;
  check_output_dir("train.run_dir", cfg_.train.run_dir);
  if (!cfg_.log.tensorboard_dir.empty())
    check_output_dir("log.tensorboard_dir", cfg_.log.tensorboard_dir);
  metrics.open(path, std::ios::app);
  if (!metrics)
    throw InputError("log.metrics_file: cannot open '" + path +
                     "' for appending: " + std::strerror(errno));
}

// One step and what follows it (log line, evaluation, metrics record, periodic checkpoint).
// A stop during the evaluation ends it early; the step itself is complete.
void Trainer::run_one_step(std::ofstream& metrics, int64_t first_step) {
  MemoryTracker::instance().reset_peaks();
  hub_->begin_step(step_ + 1);
  measured_.begin(comms());
  const StepResult r = train_step();
  measured_.end(comms());  // before the evaluation and the checkpoint: the step's own peaks
  hub_->step_timed(r);
  const bool last = step_ == cfg_.train.steps;
  std::string js = step_json(r) + ",\"elapsed_s\":" + fmt("%.3f", hub_->elapsed()) +
                   ",\"eta_s\":" + json_number("%.3f", hub_->eta());
  if (r.step % cfg_.log.every == 0 || last || r.step == first_step) log_info(log_line(r));
  std::optional<StopRequested> stopped;
  double vl = NAN;
  if (val_data_ && ((cfg_.train.eval_every > 0 && r.step % cfg_.train.eval_every == 0) || last)) {
    try {
      vl = evaluate();
      log_info("step " + std::to_string(r.step) + " | val loss " + fmt("%.4f", vl));
      js += ",\"val_loss\":" + json_number("%.9g", vl);
    } catch (const StopRequested& e) {
      stopped = e;
    }
  }
  hub_->step_finished(r, vl);
  if (is_logger()) metrics << js << "}\n" << std::flush;
  if ((cfg_.checkpoint.every > 0 && r.step % cfg_.checkpoint.every == 0) || last) save_checkpoint();
  if (stopped) throw *stopped;
}

int Trainer::run() {
  // From the start: a stop during resume (a large checkpoint) or step 1 is honoured too.
  StopSignalWatcher signals;
  // Resume first: a refused checkpoint must leave the run directory as it was.
  if (cfg_.checkpoint.resume == "auto")
    resume(checkpoint_root());
  else if (cfg_.checkpoint.resume != "never" && !resume(cfg_.checkpoint.resume))
    throw InputError("checkpoint.resume: no checkpoint found at '" + cfg_.checkpoint.resume + "'");
  if (step_ == 0 && !cfg_.train.init_from.empty()) init_weights_from(cfg_.train.init_from);
  last_saved_step_ = step_;
  const int64_t first_step = step_ + 1;
  std::ofstream metrics;  // rank 0 only: one record per step
  check_output_paths(metrics);
  if (is_logger()) write_file_atomic(cfg_.train.run_dir + "/config.yaml", config_yaml_);

  start_monitoring();
  // The GEMMs' FLOP/s are measured against the peak of the precision they run in.
  bf16_ = train_precision(cfg_.train) == Precision::bf16;
  sgemm_peak_ = bf16_ ? cached_bf16_peak_gflops() : cached_sgemm_peak_gflops();
  if (bf16_)
    log_info(std::string("strata: bf16 precision, GEMMs on oneDNN's ") +
             gemm_bf16_impl(false, true, 2048, 2048, 2048) +
             (cpu_has_native_bf16() ? ""
                                    : " (this CPU has no AVX512-BF16/AMX: bf16 is emulated, "
                                      "slower than fp32; train.precision: fp32 is faster here)"));
  log_info("strata: " + std::to_string(cfg_.model.num_parameters()) + " parameters, " +
           std::to_string(cfg_.train.global_batch * cfg_.data.seq_len) + " tokens/step, " +
           std::to_string(omp_get_max_threads()) + " threads, " + (bf16_ ? "bf16" : "sgemm") +
           " peak " + fmt("%.1f", sgemm_peak_) + " GFLOP/s, train data " +
           std::to_string(train_data_->num_tokens()) + " tokens");
  while (step_ < cfg_.train.steps) {
    int64_t stop = 0;
    const int64_t before = step_;
    try {
      run_one_step(metrics, first_step);
    } catch (const StopRequested& e) {
      stop = e.signal();
      log_info(std::string(e.what()) +
               (step_ == before ? " in step " + std::to_string(step_ + 1) +
                                      ": that step is dropped and runs "
                                      "again on resume"
                                : " in the evaluation after step " + std::to_string(step_)));
    }
    // Ranks may see a signal at different steps: agree on it (one tiny all-reduce per step).
    if (!stop) {
      stop = signals.received();
      mesh_->world().all_reduce_max_int64(&stop, 1);
    }
    if (!stop) continue;
    // A step stopped part-way left nothing behind: the checkpoint is of the last whole step.
    if (last_saved_step_ != step_) save_checkpoint();
    hub_->finish();
    log_info("stopped by signal " + std::to_string(stop) + " after step " + std::to_string(step_) +
             (step_ > 0 ? " (checkpoint saved)" : " (nothing trained, nothing saved)"));
    return 128 + static_cast<int>(stop);
  }
  hub_->finish();
  write_measured();
  return 0;
}

std::vector<const Comm*> Trainer::comms() const {
  return {&mesh_->world(), &mesh_->pp_comm(), &mesh_->dp_comm(), &mesh_->sp_comm(),
          replicas_.get(), tie_.get(),        vocab_comm_.get()};
}

// What `strata plan` predicts, as measured: one file per rank (no collective at the end).
void Trainer::write_measured() const {
  if (measured_.steps() == 0) return;
  char name[32];
  std::snprintf(name, sizeof name, "/memory_r%05d.json", mesh_->world_rank());
  write_file_atomic(cfg_.train.run_dir + name,
                    measured_.json(mesh_->world_rank(), mesh_->pp_rank()));
}

void Trainer::start_monitoring() {
  hub_ = std::make_unique<MonitorHub>(
      HubContext{&cfg_, &mesh_->world(), comms(), store_.get(), cfg_.model.num_parameters()});
  if (hub_->wants_passes()) hooks_->set_observer(hub_.get());
}

ProgressLog Trainer::progress(RankState state, const std::string& what, const std::string& unit,
                              int64_t total, bool uniform) {
  if (hub_) return hub_->progress(state, what, unit, total, uniform);
  return ProgressLog(what, unit, total, static_cast<double>(cfg_.log.progress_s), {}, uniform);
}

}  // namespace strata
