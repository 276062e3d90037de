#include "launch/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/gemm.h"
#include "core/log.h"
#include "core/memory.h"
#include "core/peak.h"
#include "launch/checkpoint.h"
#include "launch/fs_util.h"
#include "launch/train_checkpoint.h"
#include "core/atomic_file.h"
#include "optim/grad_norm.h"

namespace strata {

namespace fs = std::filesystem;

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

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

Trainer::Trainer(const JobConfig& cfg) : cfg_(cfg), config_yaml_(dump_job_config(cfg)) {
  if (cfg_.parallel.dp * cfg_.parallel.sp * cfg_.parallel.pp != 1)
    throw InputError(cfg_.source + ": parallel: dp*sp*pp = " +
                     std::to_string(cfg_.parallel.dp * cfg_.parallel.sp * cfg_.parallel.pp) +
                     " but this build trains in one process (world size 1)");
  // Threads per rank: train.threads, else OMP_NUM_THREADS when set, else the node's cores (one
  // rank per node in a single-process run).
  if (cfg_.train.threads > 0) omp_set_num_threads(static_cast<int>(cfg_.train.threads));
  else if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(omp_get_num_procs());

  model_ = std::make_unique<Model>(cfg_.model);
  model_->init(cfg_.train.seed);
  for (auto& unit : model_->units())
    optimizers_.push_back(make_optimizer(cfg_.optim.name, unit.numel(), optimizer_options(cfg_.optim)));
  store_ = std::make_unique<ActivationStore>(cfg_.model.n_layers,
                                             parse_activation_policy(cfg_.offload.policy));
  train_data_ = std::make_unique<DataLoader>(cfg_.data.train, cfg_.data.seq_len,
                                             cfg_.model.vocab_size, cfg_.train.seed);
  if (!cfg_.data.val.empty())
    val_data_ = std::make_unique<EvalLoader>(cfg_.data.val, cfg_.data.seq_len, cfg_.model.vocab_size);
  schedule_.kind = cfg_.optim.schedule;
  schedule_.lr = cfg_.optim.lr;
  schedule_.min_lr = cfg_.optim.min_lr;
  schedule_.warmup_steps = cfg_.optim.warmup_steps;
  schedule_.total_steps = cfg_.train.steps;
  schedule_.validate();
  inputs_.resize(static_cast<size_t>(cfg_.train.global_batch * cfg_.data.seq_len));
  targets_.resize(inputs_.size());
}

Trainer::~Trainer() = default;

std::string Trainer::checkpoint_root() const {
  return cfg_.checkpoint.dir.empty() ? cfg_.train.run_dir + "/checkpoints" : cfg_.checkpoint.dir;
}

StepResult Trainer::train_step() {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t flops0 = gemm_flops();
  const int64_t T = cfg_.data.seq_len, mb = cfg_.train.micro_batch;
  const int64_t n_micro = cfg_.train.global_batch / mb;
  train_data_->next_batch(cfg_.train.global_batch, inputs_.data(), targets_.data());
  int64_t counted = 0;
  for (int32_t t : targets_) counted += t >= 0;
  STRATA_CHECK(counted > 0, "a global batch with no counted targets");
  // The loss is normalised by the token count of the whole global batch (MODEL.md).
  const float loss_scale = 1.f / static_cast<float>(counted);

  double loss_sum = 0;
  const BlockShape shape{mb, T, 0};
  for (int64_t m = 0; m < n_micro; ++m) {
    const size_t off = static_cast<size_t>(m * mb * T);
    loss_sum += model_->forward_backward(inputs_.data() + off, targets_.data() + off, shape,
                                         loss_scale, *store_, m);
  }
  STRATA_CHECK(store_->empty(), "activations left in the store after the backward pass");

  double sq = 0;
  for (const auto& u : model_->units()) sq += sum_of_squares(u.grads().data(), u.numel());
  const float clip = clip_coefficient(sq, cfg_.optim.grad_clip);
  if (clip < 1.f)
    for (auto& u : model_->units()) scale(u.grads().data(), u.numel(), clip);

  const float lr = schedule_.at(step_);
  auto& units = model_->units();
  for (size_t u = 0; u < units.size(); ++u)
    optimizers_[u]->step(units[u].params().data(), units[u].grads().data(), units[u].numel(),
                         units[u].decay_segments(), lr);
  model_->zero_grads();
  ++step_;

  StepResult r;
  r.step = step_;
  r.loss = loss_sum / static_cast<double>(counted);
  if (!std::isfinite(r.loss))
    throw StrataError("step " + std::to_string(step_) + ": the loss is not finite (" +
                      std::to_string(r.loss) + "); lower optim.lr or check the data");
  r.grad_norm = std::sqrt(sq);
  r.lr = lr;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = static_cast<double>(cfg_.train.global_batch * T) / r.seconds;
  r.gflops = static_cast<double>(gemm_flops() - flops0) / r.seconds * 1e-9;
  return r;
}

double Trainer::evaluate() {
  if (!val_data_) return NAN;
  val_data_->reset();
  const int64_t mb = cfg_.train.micro_batch, T = cfg_.data.seq_len;
  std::vector<int32_t> in(static_cast<size_t>(mb * T)), tg(in.size());
  double loss = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < cfg_.train.eval_batches; ++b) {
    val_data_->next_batch(mb, in.data(), tg.data());
    int64_t c = 0;
    loss += model_->forward_loss(in.data(), tg.data(), BlockShape{mb, T, 0}, &c);
    count += c;
  }
  return loss / static_cast<double>(count);
}

void Trainer::save_checkpoint() {
  const LoaderState ls = train_data_->state();
  std::map<std::string, std::string> state = {
      {"step", std::to_string(step_)},
      {"optim.steps", std::to_string(optimizers_.front()->steps())},
      {"loader.epoch", std::to_string(ls.epoch)},
      {"loader.index", std::to_string(ls.index)},
      {"seed", std::to_string(cfg_.train.seed)},
  };
  save_training_checkpoint(checkpoint_root(), step_, *model_, optimizers_, state, config_yaml_,
                           cfg_.checkpoint.keep_last);
  log_info("checkpoint: saved step " + std::to_string(step_) + " to " + checkpoint_root() + "/" +
           step_dir_name(step_));
}

bool Trainer::resume(const std::string& where) {
  std::string dir = where;
  if (fs::exists(fs::path(where) / "manifest.yaml")) {
    dir = where;
  } else {
    auto latest = find_latest(where);
    if (!latest) return false;
    dir = *latest;
  }
  CheckpointReader ckpt(dir);
  load_model_params(ckpt, *model_);
  load_optimizer_state(ckpt, *model_, optimizers_);
  step_ = std::stoll(ckpt.state("step"));
  train_data_->restore(LoaderState{std::stoll(ckpt.state("loader.epoch")),
                                   std::stoll(ckpt.state("loader.index"))});
  log_info("resumed from " + dir + " at step " + std::to_string(step_));
  return true;
}

std::string Trainer::log_line(const StepResult& r) const {
  std::ostringstream os;
  os << "step " << r.step << "/" << cfg_.train.steps << " | loss " << fmt("%.4f", r.loss)
     << " | gnorm " << fmt("%.3f", r.grad_norm) << " | lr " << fmt("%.2e", r.lr) << " | "
     << fmt("%.1f", r.seconds * 1e3) << " ms | " << fmt("%.0f", r.tokens_per_s) << " tok/s | "
     << fmt("%.1f", r.gflops) << " GFLOP/s (" << fmt("%.1f", 100.0 * r.gflops / sgemm_peak_)
     << "% of sgemm peak " << fmt("%.0f", sgemm_peak_) << ") | peak mem "
     << format_memory(MemoryTracker::instance().snapshot());
  return os.str();
}

int Trainer::run() {
  fs::create_directories(cfg_.train.run_dir);
  write_file_atomic(cfg_.train.run_dir + "/config.yaml", config_yaml_);
  if (cfg_.checkpoint.resume == "auto") resume(checkpoint_root());
  else if (cfg_.checkpoint.resume != "never" && !resume(cfg_.checkpoint.resume))
    throw InputError("checkpoint.resume: no checkpoint found at '" + cfg_.checkpoint.resume + "'");

  sgemm_peak_ = cached_sgemm_peak_gflops();
  log_info("strata: " + std::to_string(model_->num_parameters()) + " parameters, " +
           std::to_string(cfg_.train.global_batch * cfg_.data.seq_len) + " tokens/step, " +
           std::to_string(omp_get_max_threads()) + " threads, sgemm peak " +
           fmt("%.1f", sgemm_peak_) + " GFLOP/s, train data " +
           std::to_string(train_data_->num_tokens()) + " tokens");

  std::ofstream metrics(cfg_.log.metrics_file.empty() ? cfg_.train.run_dir + "/metrics.jsonl"
                                                      : cfg_.log.metrics_file,
                        std::ios::app);
  auto old_term = std::signal(SIGTERM, on_stop_signal);
  auto old_int = std::signal(SIGINT, on_stop_signal);
  int exit_code = 0;
  while (step_ < cfg_.train.steps) {
    MemoryTracker::instance().reset_peaks();
    const StepResult r = train_step();
    const bool last = step_ == cfg_.train.steps;
    std::ostringstream js;
    js << "{\"step\":" << r.step << ",\"loss\":" << fmt("%.9g", r.loss)
       << ",\"grad_norm\":" << fmt("%.6g", r.grad_norm) << ",\"lr\":" << fmt("%.6g", r.lr)
       << ",\"ms\":" << fmt("%.3f", r.seconds * 1e3) << ",\"tokens_per_s\":"
       << fmt("%.1f", r.tokens_per_s) << ",\"gflops\":" << fmt("%.2f", r.gflops);
    if (r.step % cfg_.log.every == 0 || last || r.step == 1) log_info(log_line(r));
    if (val_data_ && ((cfg_.train.eval_every > 0 && r.step % cfg_.train.eval_every == 0) || last)) {
      const double vl = evaluate();
      log_info("step " + std::to_string(r.step) + " | val loss " + fmt("%.4f", vl));
      js << ",\"val_loss\":" << fmt("%.9g", vl);
    }
    metrics << js.str() << "}\n" << std::flush;
    if ((cfg_.checkpoint.every > 0 && r.step % cfg_.checkpoint.every == 0) || last) save_checkpoint();
    else if (g_stop_signal) save_checkpoint();
    if (g_stop_signal) {
      log_info("stopped by signal " + std::to_string(g_stop_signal) + " after step " +
               std::to_string(step_) + " (checkpoint saved)");
      exit_code = 128 + g_stop_signal;
      break;
    }
  }
  std::signal(SIGTERM, old_term);
  std::signal(SIGINT, old_int);
  return exit_code;
}

}  // namespace strata
