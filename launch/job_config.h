#pragma once
// The YAML job file: one struct per section. Parsing is strict (see job_config.cpp): an unknown
// key, a wrong type or an out-of-range value is an InputError naming file, line, column and key.
#include <cstdint>
#include <string>
#include <vector>

#include "models/config.h"

namespace strata {

struct DataConfig {
  std::string train;      // token shards: a .bin file, a directory of them, or a glob
  std::string val;        // validation shards (same forms); empty = none
  int64_t seq_len = 128;  // tokens per sequence (targets are the next tokens)
};

struct TrainConfig {
  int64_t steps = 100;
  int64_t global_batch = 8;  // sequences per optimizer step, over all data-parallel ranks
  int64_t micro_batch = 8;   // sequences per forward/backward on one rank
  uint64_t seed = 1234;
  int64_t eval_every = 50;  // 0 = never
  int64_t eval_batches = 4;
  std::string run_dir = "runs/tiny";
  int64_t threads = 0;        // per rank; 0 = OMP_NUM_THREADS, else cores / ranks on the node
  int64_t max_memory_mb = 0;  // cap on the tracked bytes of one rank (MiB); 0 = none
  // Watchdog: seconds any collective or point-to-point wait may take before every rank exits
  // naming the ranks that did not arrive (the first step and checkpoint I/O get longer).
  int64_t collective_timeout_s = 120;
  // A non-finite loss or global gradient norm: stop the run, or skip that step's update.
  std::string on_nonfinite = "stop";  // stop | skip
  int64_t max_skipped = 3;            // skip: stop after this many skipped steps in a row
  // The GEMMs' precision (core/precision.h): fp32 (the bit-exact reference) or bf16 (mixed:
  // bf16 operands, fp32 accumulation, fp32 master weights and everything else).
  std::string precision = "fp32";  // fp32 | bf16
  // Parameters to start from (safetensors, Llama names; launch/init_from.h); empty = the
  // seeded initialisation. Ignored when a checkpoint is resumed.
  std::string init_from;
};

// train.precision as the enum the model computes with.
Precision train_precision(const TrainConfig& t);

struct OptimConfig {
  std::string name = "adamw";  // adamw | sgd
  float lr = 3e-3f;
  float min_lr = 3e-4f;
  int64_t warmup_steps = 10;
  std::string schedule = "cosine";  // cosine | linear | constant
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;  // decoupled; not applied to norm gains
  float momentum = 0.9f;      // sgd
  float grad_clip = 1.0f;     // global L2 norm; 0 = off
};

struct ParallelConfig {
  int64_t dp = 1;
  int64_t sp = 1;
  int64_t pp = 1;
  int64_t zero_stage = 0;  // 0..3
  // Pipeline (docs/PIPELINE.md): the schedule generator (parallel/schedule_gen.h's names), the
  // stages per pipeline rank (>= 2 for interleaved, 1 otherwise), a CSV schedule replacing the
  // generator (its pp and micro-batches must be the job's), and the blocks per stage
  // (pp * virtual_stages entries summing to model.n_layers; empty = placed by cost).
  std::string schedule = "1f1b";  // gpipe | 1f1b | interleaved | zb-h1
  int64_t virtual_stages = 1;     // 1..64
  std::string schedule_file;
  std::vector<int64_t> pp_layers;
  // Vocabulary parallelism (docs/PIPELINE.md, "Vocabulary passes"): the embedding and the LM
  // head + loss split by vocabulary rows over all pipeline ranks, their passes (EMBED_F, S, T,
  // EMBED_B) placed into the schedule; off, the embedding sits on stage 0 and the head on the last.
  bool vocab_parallel = false;
  // Whether the vocabulary collectives overlap other micro-batches' work (posted at their
  // action, waited for where their result is needed); false waits for each where it is posted
  // (for side-by-side measurements of what the overlap buys).
  bool vocab_overlap = true;
};

struct OffloadConfig {
  std::string policy = "keep";  // keep | recompute | swap | auto
  // auto: activation memory for saved sets (MiB); 0 = what train.max_memory_mb leaves
  int64_t budget_mb = 0;
  // swap only:
  std::string tier = "nvme";             // host | nvme | cxl
  std::string dir = "/tmp/strata_swap";  // nvme: directory of the per-rank swap files
  int64_t capacity_gb = 16;              // most bytes (GiB) the tier holds per rank
  std::string cxl_node = "auto";         // cxl: auto (a CPU-less NUMA node) or a node number
  int64_t keep_last = 1;  // the last blocks stay in memory (their backward comes first)
  // swapped sets whose writes may be in flight when the next block saves (the rest are waited
  // for first): bounds what unwritten activations hold
  int64_t writes_in_flight = 1;
  int64_t queue_depth = 32;  // nvme: block requests in flight
  int64_t block_kb = 1024;   // nvme: I/O request size (KiB)
  bool checksums = false;    // nvme: CRC-32C of every swapped tensor, checked when read back
};

struct CheckpointConfig {
  std::string dir;              // default: <run_dir>/checkpoints
  int64_t every = 0;            // steps between checkpoints; 0 = only at the end
  int64_t keep_last = 2;        // older step directories are removed; 0 = keep all
  std::string resume = "auto";  // auto (latest if present) | never | <checkpoint dir>
};

struct LogConfig {
  int64_t every = 1;         // steps between log lines
  std::string metrics_file;  // default: <run_dir>/metrics.jsonl
  // Seconds between the progress lines of a long evaluation or checkpoint save (0 = every
  // batch or phase).
  int64_t progress_s = 10;
  // Steps (1-based) whose trace-event JSON is written to <run_dir>/trace_r<rank>.json.
  std::vector<int64_t> trace_steps;
  std::string tensorboard_dir;  // rank 0 writes TensorBoard event files here; empty = none
};

// The run monitor (launch/monitor_hub.h): rank 0 serves /metrics, /status and a dashboard.
struct MonitorConfig {
  int64_t port = 0;                // 0 = off
  std::string bind = "127.0.0.1";  // an IP address literal; 0.0.0.0 or :: serve every interface
};

struct JobConfig {
  std::string
      source;  // file the config was read from ("<embedded configs/tiny.yaml>" for the default)
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimConfig optim;
  ParallelConfig parallel;
  OffloadConfig offload;
  CheckpointConfig checkpoint;
  LogConfig log;
  MonitorConfig monitor;
};

// Parses YAML text; `source` names it in errors. `overrides` are "section.key=value" strings
// (from --set), applied after the file, each checked like a file entry. Throws InputError.
JobConfig parse_job_config(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides = {});
JobConfig load_job_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The fully resolved config as YAML (every key, defaults included); parses back to the same config.
std::string dump_job_config(const JobConfig& cfg);

}  // namespace strata
