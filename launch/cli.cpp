#include "launch/cli.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "launch/checkpoint.h"
#include "launch/embedded_config.h"
#include "launch/job_config.h"
#include "launch/memory_estimate.h"
#include "launch/memory_plan.h"
#include "launch/pipeline_plan.h"
#include "launch/prepare_data.h"
#include "launch/stop_signals.h"
#include "launch/train_checkpoint.h"
#include "launch/trainer.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "parallel/world.h"

namespace strata {

namespace {

constexpr const char* kMainHelp =
    R"(strata: pretrain hybrid linear-attention LLMs (ZeRO, LASP-2, pipeline, offload)

usage: strata <command> [options]

commands:
  train         train from a YAML job file (default: the embedded configs/tiny.yaml)
  eval          validation loss of a checkpoint
  export        write a checkpoint's weights as safetensors
  prepare-data  turn text files into token shards (llm.c .bin layout; byte or SentencePiece)
  schedule      print a job's pipeline plan: stages, schedule timeline, simulated bubble
  plan          predict each rank's peak memory by category and its communication, no training

'strata <command> --help' describes each command.
)";

constexpr const char* kTrainHelp = R"(usage: strata train [JOB.yaml] [--set section.key=value]...
                    [--init-from FILE.safetensors]

Trains the model of the job file. Without JOB.yaml, runs the embedded default (configs/tiny.yaml).
  --set section.key=value   override one job-file entry (repeatable), e.g. --set train.steps=20
  --init-from FILE          start from these weights (safetensors, Llama names; the same as
                            --set train.init_from=FILE); a resumed checkpoint takes precedence
  --print-config            print the resolved job file and exit
Resumes from the newest checkpoint under checkpoint.dir when checkpoint.resume is 'auto'.
The resolved config is saved as <train.run_dir>/config.yaml; metrics go to metrics.jsonl.
)";

constexpr const char* kEvalHelp =
    R"(usage: strata eval [JOB.yaml] --checkpoint PATH [--batches N] [--set ...]
       strata eval [JOB.yaml] --init-from FILE.safetensors [--batches N] [--set ...]

Prints the mean validation loss of a checkpoint (a step directory or a checkpoint root, which
means its latest step). Without JOB.yaml, the job config saved in the checkpoint is used.
  --checkpoint PATH   checkpoint step directory or root
  --init-from FILE    instead, the weights of a safetensors file (a `strata export`, or Llama
                      names) for the model of JOB.yaml (default: the embedded configs/tiny.yaml)
  --batches N         micro-batches of validation data (default: train.eval_batches)
)";

constexpr const char* kExportHelp =
    R"(usage: strata export --format safetensors --checkpoint PATH --output FILE [--dtype f32|bf16]

Writes the model weights of a checkpoint with the Llama-style names of docs/MODEL.md; the model
configuration is stored as JSON in the header's __metadata__ under 'strata_config'.
)";

constexpr const char* kPrepareHelp =
    R"(usage: strata prepare-data --input PATH [--input PATH]... --output DIR
                           [--tokenizer byte|spm:MODEL_FILE]
                           [--train-tokenizer --vocab-size N [--tokenizer-type bpe|unigram]]
                           [--val-fraction F] [--version 1|7] [--shard-tokens N] [--quiet]

Tokenizes text files (directories are searched recursively; binary files are skipped) into
DIR/train_000000.bin ... and DIR/val_000000.bin ... in llm.c's shard layout, and writes
DIR/tokenizer.yaml (which tokenizer; the trainer checks model.vocab_size against it).
  --tokenizer byte        byte-level: vocab 256, documents separated by token 0 (default)
  --tokenizer spm:FILE    a SentencePiece model (documents separated by its <s>); copied to
                          DIR/tokenizer.model
  --train-tokenizer       first train a SentencePiece model of --vocab-size N pieces (BPE by
                          default) on the training part of the text, saved as DIR/tokenizer.model
  --version 1|7           1: uint16 tokens (llm.c's GPT-2 layout), 7: uint32 (llm.c's Llama-3
                          layout); default: 1 for vocabularies up to 65536 tokens, else 7
  --val-fraction F        the last F (default 0.05) of every document goes to validation
  --quiet                 no progress lines on stderr
Existing llm.c shards (GPT-2 or Llama-3 layout) and Megatron-LM .bin/.idx datasets need no
preparation: point data.train at them.
)";

constexpr const char* kScheduleHelp =
    R"(usage: strata schedule [JOB.yaml] [--set section.key=value]... [--csv FILE] [--peak-gflops G]

Prints the pipeline plan of the job file, exactly what 'strata train' would run, without running
anything: the blocks each stage holds and their cost per micro-batch, the lowered schedule as a
timeline (one column per pipeline rank), the simulated step time and bubble fraction, and the
ideal bubble beside it (docs/PIPELINE.md). Without JOB.yaml, the embedded configs/tiny.yaml.
  --csv FILE        also write the lowered schedule as CSV; edit it and pass it back with
                    --set parallel.schedule_file=FILE
  --peak-gflops G   cost the actions in seconds at G GFLOP/s (default: in GFLOP)
)";

constexpr const char* kPlanHelp =
    R"(usage: strata plan [JOB.yaml] [--world N] [--set section.key=value]... [--json]

Predicts, without training, what every rank of the job holds at its peak in a step, by memory
category (params, grads, optimizer, activations, comm, io), under the job's ZeRO stage, sp, pp,
vocabulary split, offload policy and precision, and the bytes each mesh axis moves per step:
the trainer's allocations replayed, not measured. 'strata train' writes what it measured to
<train.run_dir>/memory_r<RANK>.json to compare. Exits 2 when the largest rank exceeds
train.max_memory_mb, naming the category that overflows and the changes that would fit.
  --world N   plan for N processes: parallel.pp and sp kept, dp = N / (pp * sp)
  --json      the prediction as JSON (per rank: peak_bytes, comm_bytes_per_step)
)";

// Flag parsing: "--name value" or "--name=value"; positionals kept in order.
struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> flags;
  bool help = false;
  bool has(const std::string& n) const {
    for (const auto& f : flags)
      if (f.first == n) return true;
    return false;
  }
  std::optional<std::string> get(const std::string& n) const {
    std::optional<std::string> v;
    for (const auto& f : flags)
      if (f.first == n) v = f.second;
    return v;
  }
  std::vector<std::string> all(const std::string& n) const {
    std::vector<std::string> v;
    for (const auto& f : flags)
      if (f.first == n) v.push_back(f.second);
    return v;
  }
};

Args parse_args(const std::vector<std::string>& args, size_t begin,
                const std::vector<std::string>& value_flags,
                const std::vector<std::string>& bool_flags, const std::string& command) {
  Args a;
  for (size_t i = begin; i < args.size(); ++i) {
    const std::string& s = args[i];
    if (s == "--help" || s == "-h") {
      a.help = true;
      continue;
    }
    if (s.rfind("--", 0) != 0) {
      a.positional.push_back(s);
      continue;
    }
    std::string name = s.substr(2), value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const bool is_bool = std::find(bool_flags.begin(), bool_flags.end(), name) != bool_flags.end();
    const bool takes = std::find(value_flags.begin(), value_flags.end(), name) != value_flags.end();
    if (!is_bool && !takes)
      throw InputError("strata " + command + ": unknown option '--" + name + "' (see strata " +
                       command + " --help)");
    if (takes && !inline_value) {
      if (i + 1 >= args.size())
        throw InputError("strata " + command + ": option '--" + name + "' needs a value");
      value = args[++i];
    }
    a.flags.emplace_back(name, value);
  }
  return a;
}

int64_t parse_int_flag(const std::string& command, const std::string& name, const std::string& v) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw InputError("strata " + command + ": --" + name + ": expected an integer, got '" + v + "'");
}

JobConfig load_config_arg(const Args& a, const std::string& command) {
  if (a.positional.size() > 1)
    throw InputError("strata " + command + ": expected at most one job file, got '" +
                     a.positional[1] + "' too");
  const auto sets = a.all("set");
  if (a.positional.empty())
    return parse_job_config(kEmbeddedTinyYaml, "<embedded configs/tiny.yaml>", sets);
  return load_job_config(a.positional[0], sets);
}

int cmd_train(const std::vector<std::string>& args) {
  // Before any thread exists (MPI, OpenMP, oneDNN): SIGTERM/SIGINT are then taken by the
  // trainer's watcher thread only, between steps.
  block_stop_signals();
  const Args a = parse_args(args, 2, {"set", "init-from"}, {"print-config"}, "train");
  if (a.help) {
    std::fputs(kTrainHelp, stdout);
    return 0;
  }
  JobConfig cfg = load_config_arg(a, "train");
  if (const auto f = a.get("init-from")) cfg.train.init_from = *f;
  if (a.has("print-config")) {
    std::fputs(dump_job_config(cfg).c_str(), stdout);
    return 0;
  }
  World world(nullptr, nullptr);  // MPI when started by mpirun/srun, else one process
  check_job_fits_memory(cfg, world.local_size());  // before anything is sized by the job
  // Threads per rank: train.threads, else OMP_NUM_THREADS, else cores on the node / ranks on it.
  if (cfg.train.threads == 0 && !std::getenv("OMP_NUM_THREADS"))
    omp_set_num_threads(world.default_threads_per_rank());
  try {
    Trainer trainer(cfg, &world.comm());
    return trainer.run();
  } catch (const StrataError& e) {
    // One failing rank must not leave the others waiting in a collective: name the rank and
    // abort the whole job with the error's exit code.
    if (world.size() == 1) throw;
    std::fprintf(stderr, "strata: rank %d of %d: error: %s\n", world.rank(), world.size(),
                 e.what());
    world.abort(static_cast<int>(e.code()));
  }
}

// --batches N into the config.
void apply_eval_batches(const Args& a, JobConfig& cfg) {
  if (const auto b = a.get("batches")) {
    cfg.train.eval_batches = parse_int_flag("eval", "batches", *b);
    if (cfg.train.eval_batches < 1) throw InputError("strata eval: --batches: expected >= 1");
  }
  if (cfg.data.val.empty()) throw InputError("strata eval: data.val is empty: no validation data");
}

// Evaluates the trainer's current weights; one line on rank 0.
int print_eval(Trainer& trainer, const std::string& what, const std::string& step, int64_t batches,
               int rank) {
  const double loss = trainer.evaluate();
  if (!std::isfinite(loss))  // weights that evaluate to NaN are not a result
    throw StrataError("strata eval: the validation loss of " + what + " is not finite (" +
                      std::to_string(loss) + ")");
  if (rank == 0)  // the loss is all-reduced: one line, not one per rank
    std::printf("step %s val_loss %.6f batches %lld\n", step.c_str(), loss,
                static_cast<long long>(batches));
  return 0;
}

// strata eval --init-from FILE: the model and data of the job file, the weights of FILE.
int eval_weights_file(const Args& a, const std::string& file) {
  JobConfig cfg = load_config_arg(a, "eval");
  apply_eval_batches(a, cfg);
  cfg.checkpoint.resume = "never";
  World world(nullptr, nullptr);
  check_job_fits_memory(cfg, world.local_size());
  Trainer trainer(cfg, &world.comm());
  trainer.init_weights_from(file);
  return print_eval(trainer, file, "0", cfg.train.eval_batches, world.rank());
}

int cmd_eval(const std::vector<std::string>& args) {
  const Args a = parse_args(args, 2, {"set", "checkpoint", "batches", "init-from"}, {}, "eval");
  if (a.help) {
    std::fputs(kEvalHelp, stdout);
    return 0;
  }
  const auto where = a.get("checkpoint");
  if (where && a.has("init-from"))
    throw InputError("strata eval: --checkpoint and --init-from exclude each other");
  if (const auto f = a.get("init-from")) return eval_weights_file(a, *f);
  if (!where) throw InputError("strata eval: --checkpoint PATH is required (or --init-from FILE)");
  const auto dir = std::filesystem::exists(*where + "/manifest.yaml") ? std::optional(*where)
                                                                      : find_latest(*where);
  if (!dir) throw InputError("strata eval: no checkpoint at '" + *where + "'");
  CheckpointReader ckpt(*dir);
  JobConfig cfg = a.positional.empty()
                      ? parse_job_config(ckpt.config_yaml(), *dir + "/manifest.yaml", a.all("set"))
                      : load_config_arg(a, "eval");
  apply_eval_batches(a, cfg);
  cfg.checkpoint.resume = "never";
  World world(nullptr, nullptr);
  // The saved layout (e.g. dp=2) need not match this run: any layout reads any checkpoint.
  if (const std::string note = fit_layout_to_world(cfg, world.size());
      !note.empty() && world.rank() == 0)
    log_info("eval: " + note);
  check_job_fits_memory(cfg, world.local_size());
  Trainer trainer(cfg, &world.comm());
  trainer.load_weights(ckpt);
  return print_eval(trainer, *dir, std::to_string(ckpt.step()), cfg.train.eval_batches,
                    world.rank());
}

int cmd_export(const std::vector<std::string>& args) {
  const Args a = parse_args(args, 2, {"format", "checkpoint", "output", "dtype"}, {}, "export");
  if (a.help) {
    std::fputs(kExportHelp, stdout);
    return 0;
  }
  const std::string format = a.get("format").value_or("safetensors");
  if (format != "safetensors")
    throw InputError("strata export: --format: expected safetensors, got '" + format + "'");
  const auto where = a.get("checkpoint");
  const auto out = a.get("output");
  if (!where || !out) throw InputError("strata export: --checkpoint and --output are required");
  const std::string dtype_s = a.get("dtype").value_or("f32");
  if (dtype_s != "f32" && dtype_s != "bf16")
    throw InputError("strata export: --dtype: expected f32 or bf16, got '" + dtype_s + "'");
  const auto dir = std::filesystem::exists(*where + "/manifest.yaml") ? std::optional(*where)
                                                                      : find_latest(*where);
  if (!dir) throw InputError("strata export: no checkpoint at '" + *where + "'");
  CheckpointReader ckpt(*dir);
  const JobConfig cfg = parse_job_config(ckpt.config_yaml(), *dir + "/manifest.yaml");
  Model model(cfg.model);
  for (auto& u : model.units()) read_unit_range(ckpt, u, u.params().data(), 0, u.numel());
  std::vector<SafeTensor> tensors;
  for (const auto& u : model.units())
    for (const auto& t : u.tensors())
      tensors.push_back({t.name, t.shape, u.params().data() + t.offset});
  export_safetensors(*out, tensors,
                     {{"strata_config", model_config_json(cfg.model)},
                      {"step", std::to_string(ckpt.step())},
                      {"format", "pt"}},
                     dtype_s == "bf16" ? SafetensorsDType::BF16 : SafetensorsDType::F32);
  std::printf("exported %zu tensors (%lld parameters, %s) from step %lld to %s\n", tensors.size(),
              static_cast<long long>(model.num_parameters()), dtype_s.c_str(),
              static_cast<long long>(ckpt.step()), out->c_str());
  return 0;
}

// The tokenizer flags of prepare-data.
void parse_tokenizer_flags(const Args& a, PrepareDataOptions& opt) {
  if (const auto t = a.get("tokenizer")) opt.tokenizer = *t;
  opt.train_tokenizer = a.has("train-tokenizer");
  const auto vocab = a.get("vocab-size");
  const auto type = a.get("tokenizer-type");
  if (!opt.train_tokenizer && (vocab || type))
    throw InputError(
        "strata prepare-data: --vocab-size and --tokenizer-type go with "
        "--train-tokenizer");
  if (opt.train_tokenizer && !vocab)
    throw InputError("strata prepare-data: --train-tokenizer needs --vocab-size N");
  if (vocab) opt.training.vocab_size = parse_int_flag("prepare-data", "vocab-size", *vocab);
  if (type) opt.training.model_type = *type;
}

int cmd_prepare_data(const std::vector<std::string>& args) {
  const Args a = parse_args(args, 2,
                            {"input", "output", "val-fraction", "version", "shard-tokens",
                             "tokenizer", "vocab-size", "tokenizer-type"},
                            {"train-tokenizer", "quiet"}, "prepare-data");
  if (a.help) {
    std::fputs(kPrepareHelp, stdout);
    return 0;
  }
  PrepareDataOptions opt;
  opt.inputs = a.all("input");
  for (const auto& p : a.positional) opt.inputs.push_back(p);
  if (opt.inputs.empty()) throw InputError("strata prepare-data: at least one --input is required");
  const auto out = a.get("output");
  if (!out) throw InputError("strata prepare-data: --output DIR is required");
  opt.output_dir = *out;
  if (const auto f = a.get("val-fraction")) {
    try {
      size_t used = 0;
      opt.val_fraction = std::stod(*f, &used);
      if (used != f->size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw InputError("strata prepare-data: --val-fraction: expected a number, got '" + *f + "'");
    }
    if (!(opt.val_fraction >= 0 && opt.val_fraction < 1))
      throw InputError("strata prepare-data: --val-fraction: expected a value in [0, 1)");
  }
  if (const auto v = a.get("version")) {
    opt.version = static_cast<int>(parse_int_flag("prepare-data", "version", *v));
    if (opt.version != 1 && opt.version != 7)
      throw InputError(
          "strata prepare-data: --version: expected 1 (uint16, llm.c's GPT-2 "
          "layout) or 7 (uint32, llm.c's Llama-3 layout)");
  }
  if (const auto s = a.get("shard-tokens")) {
    opt.shard_tokens = parse_int_flag("prepare-data", "shard-tokens", *s);
    if (opt.shard_tokens < 2)
      throw InputError("strata prepare-data: --shard-tokens: expected >= 2");
  }
  parse_tokenizer_flags(a, opt);
  opt.progress = !a.has("quiet");
  const PrepareDataSummary s = prepare_data(opt);
  std::printf(
      "prepare-data: %lld documents (%lld skipped) -> %lld train tokens in %zu shards, "
      "%lld val tokens in %zu shards under %s (%s tokenizer, vocab %lld, shard version %d)\n",
      static_cast<long long>(s.files), static_cast<long long>(s.skipped_files),
      static_cast<long long>(s.train_tokens), s.train_shards.size(),
      static_cast<long long>(s.val_tokens), s.val_shards.size(), opt.output_dir.c_str(),
      s.tokenizer_kind.c_str(), static_cast<long long>(s.vocab_size), s.version);
  return 0;
}

int cmd_schedule(const std::vector<std::string>& args) {
  const Args a = parse_args(args, 2, {"set", "csv", "peak-gflops"}, {}, "schedule");
  if (a.help) {
    std::fputs(kScheduleHelp, stdout);
    return 0;
  }
  double peak = 0;
  if (const auto g = a.get("peak-gflops")) {
    try {
      size_t used = 0;
      peak = std::stod(*g, &used) * 1e9;
      if (used != g->size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw InputError("strata schedule: --peak-gflops: expected a number, got '" + *g + "'");
    }
    if (!(peak > 0 && std::isfinite(peak)))
      throw InputError("strata schedule: --peak-gflops: expected a value > 0, got '" + *g + "'");
  }
  const JobConfig cfg = load_config_arg(a, "schedule");
  const PipelinePlan plan = plan_pipeline(cfg, peak);
  if (const auto csv = a.get("csv")) {
    std::ofstream out(*csv, std::ios::binary | std::ios::trunc);
    out << write_schedule_csv(plan.schedule);
    if (!out.flush()) throw InputError("strata schedule: --csv: cannot write '" + *csv + "'");
  }
  std::fputs(format_pipeline_plan(plan, cfg).c_str(), stdout);
  return 0;
}

int cmd_plan(const std::vector<std::string>& args) {
  const Args a = parse_args(args, 2, {"set", "world"}, {"json"}, "plan");
  if (a.help) {
    std::fputs(kPlanHelp, stdout);
    return 0;
  }
  JobConfig cfg = load_config_arg(a, "plan");
  if (const auto w = a.get("world")) set_plan_world(cfg, parse_int_flag("plan", "world", *w));
  const MemoryPlan plan = plan_memory(cfg);
  std::fputs((a.has("json") ? memory_plan_json(plan) : format_memory_plan(plan, cfg)).c_str(),
             stdout);
  if (plan.fits()) return 0;
  std::fprintf(stderr, "strata: error: %s: %s\n", cfg.source.c_str(),
               memory_plan_overflow(plan, cfg).c_str());
  return 2;
}

}  // namespace

int cli_main(const std::vector<std::string>& args) {
  try {
    if (args.size() < 2 || args[1] == "--help" || args[1] == "-h" || args[1] == "help") {
      std::fputs(kMainHelp, args.size() < 2 ? stderr : stdout);
      return args.size() < 2 ? 2 : 0;
    }
    const std::string& cmd = args[1];
    if (cmd == "train") return cmd_train(args);
    if (cmd == "eval") return cmd_eval(args);
    if (cmd == "export") return cmd_export(args);
    if (cmd == "prepare-data") return cmd_prepare_data(args);
    if (cmd == "schedule") return cmd_schedule(args);
    if (cmd == "plan") return cmd_plan(args);
    std::fprintf(stderr, "strata: unknown command '%s'\n\n%s", cmd.c_str(), kMainHelp);
    return 2;
  } catch (const StrataError& e) {
    std::fprintf(stderr, "strata: error: %s\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strata: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace strata
