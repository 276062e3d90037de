#include "launch/job_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "launch/monitor_keys.h"
#include "launch/pipeline_keys.h"
#include "launch/yaml_documents.h"
#include "launch/yaml_values.h"
#include "parallel/schedule_gen.h"

namespace strata {
namespace {

using yaml_values::describe;
using yaml_values::format_value;
using yaml_values::read;
using yaml_values::shown_value;

// ---------------------------------------------------------------------------------------------
// "Did you mean": optimal-string-alignment distance, so a swapped pair of letters counts as one.

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The closest candidate when it is near enough to be a typo (a third of the name, at least 2, and
// never a complete rewrite); "" otherwise.
std::string closest(const std::string& name, const std::vector<std::string>& candidates) {
  if (name.size() > 64) return "";  // no key is that long; the distance table would be huge
  const size_t limit = std::max<size_t>(2, name.size() / 3);
  std::string best;
  size_t best_d = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(name, c);
    if (d < best_d && d < std::max(name.size(), c.size())) best = c, best_d = d;
  }
  return best;
}

std::string did_you_mean(const std::string& suggestion) {
  return suggestion.empty() ? "" : " (did you mean '" + suggestion + "'?)";
}

// ---------------------------------------------------------------------------------------------
// The schema: one entry per key, in file order. Paths are "section.key" (model.linear_attention
// nests one level more). Parsing, --set, dump and the docs all follow this one table.

struct Field {
  std::string path;
  std::function<std::string(JobConfig&, const YAML::Node&)> set;  // "" or what was wrong
  std::function<std::string(const JobConfig&)> get;               // YAML text of the value
};

// `access` is a generic lambda returning a reference to the field, so it serves both the const
// (dump) and the mutable (parse) side.
template <class Access>
Field field(std::string path, Access access) {
  return {std::move(path),
          [access](JobConfig& c, const YAML::Node& n) { return read(n, access(c)); },
          [access](const JobConfig& c) { return format_value(access(c)); }};
}

// A string that must be one of `names`, stored as T (an enum, or the string itself).
template <class T, class Access>
Field choice(std::string path, Access access, std::vector<std::pair<std::string, T>> names) {
  auto set = [access, names](JobConfig& c, const YAML::Node& n) -> std::string {
    std::string allowed;
    std::vector<std::string> allowed_names;
    for (const auto& [name, value] : names) {
      if (n.IsScalar() && n.Scalar() == name) {
        access(c) = value;
        return "";
      }
      allowed += (allowed.empty() ? "" : "|") + name;
      allowed_names.push_back(name);
    }
    const std::string hint = n.IsScalar() ? closest(n.Scalar(), allowed_names) : "";
    return "expected one of " + allowed + ", got " + describe(n) + did_you_mean(hint);
  };
  auto get = [access, names](const JobConfig& c) {
    for (const auto& [name, value] : names)
      if (access(c) == value) return name;
    return names.front().first;  // unreachable: every enum value has a name
  };
  return {std::move(path), set, get};
}

template <class Access>
Field string_choice(std::string path, Access access, std::vector<std::string> names) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& n : names) pairs.emplace_back(n, n);
  return choice<std::string>(std::move(path), access, pairs);
}

// The generators' own spelling (parallel/schedule_gen.h), so the key and the code cannot drift.
std::vector<std::string> schedule_names() {
  std::vector<std::string> names;
  for (ScheduleKind kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b,
                            ScheduleKind::interleaved, ScheduleKind::zb_h1})
    names.emplace_back(schedule_kind_name(kind));
  return names;
}

#define STRATA_REF(member) \
  [](auto& c) -> auto& { return c.member; }

const std::vector<Field>& schema() {
  static const std::vector<Field> fields = {
      field("model.vocab_size", STRATA_REF(model.vocab_size)),
      field("model.dim", STRATA_REF(model.dim)),
      field("model.n_layers", STRATA_REF(model.n_layers)),
      field("model.n_heads", STRATA_REF(model.n_heads)),
      field("model.n_kv_heads", STRATA_REF(model.n_kv_heads)),
      field("model.ffn_dim", STRATA_REF(model.ffn_dim)),
      field("model.layer_pattern", STRATA_REF(model.layer_pattern)),
      field("model.norm_eps", STRATA_REF(model.norm_eps)),
      field("model.rope_theta", STRATA_REF(model.rope_theta)),
      choice<FeatureMap>("model.linear_attention.feature_map", STRATA_REF(model.feature_map),
                         {{"silu", FeatureMap::silu}, {"identity", FeatureMap::identity}}),
      choice<Decay>("model.linear_attention.decay", STRATA_REF(model.decay),
                    {{"retnet", Decay::retnet}, {"none", Decay::none}}),
      field("model.linear_attention.chunk_size", STRATA_REF(model.chunk_size)),
      field("model.tie_embeddings", STRATA_REF(model.tie_embeddings)),
      field("data.train", STRATA_REF(data.train)),
      field("data.val", STRATA_REF(data.val)),
      field("data.seq_len", STRATA_REF(data.seq_len)),
      field("train.steps", STRATA_REF(train.steps)),
      field("train.global_batch", STRATA_REF(train.global_batch)),
      field("train.micro_batch", STRATA_REF(train.micro_batch)),
      field("train.seed", STRATA_REF(train.seed)),
      field("train.eval_every", STRATA_REF(train.eval_every)),
      field("train.eval_batches", STRATA_REF(train.eval_batches)),
      field("train.run_dir", STRATA_REF(train.run_dir)),
      field("train.threads", STRATA_REF(train.threads)),
      field("train.max_memory_mb", STRATA_REF(train.max_memory_mb)),
      field("train.collective_timeout_s", STRATA_REF(train.collective_timeout_s)),
      string_choice("train.on_nonfinite", STRATA_REF(train.on_nonfinite), {"stop", "skip"}),
      string_choice("train.precision", STRATA_REF(train.precision), {"fp32", "bf16"}),
      field("train.max_skipped", STRATA_REF(train.max_skipped)),
      field("train.init_from", STRATA_REF(train.init_from)),
      string_choice("optim.name", STRATA_REF(optim.name), {"adamw", "sgd"}),
      field("optim.lr", STRATA_REF(optim.lr)),
      field("optim.min_lr", STRATA_REF(optim.min_lr)),
      field("optim.warmup_steps", STRATA_REF(optim.warmup_steps)),
      string_choice("optim.schedule", STRATA_REF(optim.schedule), {"cosine", "linear", "constant"}),
      field("optim.beta1", STRATA_REF(optim.beta1)),
      field("optim.beta2", STRATA_REF(optim.beta2)),
      field("optim.eps", STRATA_REF(optim.eps)),
      field("optim.weight_decay", STRATA_REF(optim.weight_decay)),
      field("optim.momentum", STRATA_REF(optim.momentum)),
      field("optim.grad_clip", STRATA_REF(optim.grad_clip)),
      field("parallel.dp", STRATA_REF(parallel.dp)),
      field("parallel.sp", STRATA_REF(parallel.sp)),
      field("parallel.pp", STRATA_REF(parallel.pp)),
      field("parallel.zero_stage", STRATA_REF(parallel.zero_stage)),
      string_choice("parallel.schedule", STRATA_REF(parallel.schedule), schedule_names()),
      field("parallel.virtual_stages", STRATA_REF(parallel.virtual_stages)),
      field("parallel.schedule_file", STRATA_REF(parallel.schedule_file)),
      field("parallel.pp_layers", STRATA_REF(parallel.pp_layers)),
      field("parallel.vocab_parallel", STRATA_REF(parallel.vocab_parallel)),
      field("parallel.vocab_overlap", STRATA_REF(parallel.vocab_overlap)),
      string_choice("offload.policy", STRATA_REF(offload.policy),
                    {"keep", "recompute", "swap", "auto"}),
      field("offload.budget_mb", STRATA_REF(offload.budget_mb)),
      string_choice("offload.tier", STRATA_REF(offload.tier), {"host", "nvme", "cxl"}),
      field("offload.dir", STRATA_REF(offload.dir)),
      field("offload.capacity_gb", STRATA_REF(offload.capacity_gb)),
      field("offload.cxl_node", STRATA_REF(offload.cxl_node)),
      field("offload.keep_last", STRATA_REF(offload.keep_last)),
      field("offload.writes_in_flight", STRATA_REF(offload.writes_in_flight)),
      field("offload.queue_depth", STRATA_REF(offload.queue_depth)),
      field("offload.block_kb", STRATA_REF(offload.block_kb)),
      field("offload.checksums", STRATA_REF(offload.checksums)),
      field("checkpoint.dir", STRATA_REF(checkpoint.dir)),
      field("checkpoint.every", STRATA_REF(checkpoint.every)),
      field("checkpoint.keep_last", STRATA_REF(checkpoint.keep_last)),
      field("checkpoint.resume", STRATA_REF(checkpoint.resume)),
      field("log.every", STRATA_REF(log.every)),
      field("log.metrics_file", STRATA_REF(log.metrics_file)),
      field("log.progress_s", STRATA_REF(log.progress_s)),
      field("log.trace_steps", STRATA_REF(log.trace_steps)),
      field("log.tensorboard_dir", STRATA_REF(log.tensorboard_dir)),
      field("monitor.port", STRATA_REF(monitor.port)),
      field("monitor.bind", STRATA_REF(monitor.bind)),
  };
  return fields;
}

#undef STRATA_REF

const Field* find_field(const std::string& path) {
  for (const Field& f : schema())
    if (f.path == path) return &f;
  return nullptr;
}

// A map path is a proper prefix of some field path: "model", "model.linear_attention", "train".
bool is_map_path(const std::string& path) {
  return std::any_of(schema().begin(), schema().end(),
                     [&](const Field& f) { return f.path.starts_with(path + "."); });
}

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

std::string last_component(const std::string& path) {
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// The keys directly under map path `prefix` ("" = the sections), in schema order.
std::vector<std::string> child_keys(const std::string& prefix) {
  std::vector<std::string> keys;
  const std::string start = prefix.empty() ? "" : prefix + ".";
  for (const Field& f : schema()) {
    if (!f.path.starts_with(start)) continue;
    const std::string rest = f.path.substr(start.size());
    const std::string key = rest.substr(0, rest.find('.'));
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
  }
  return keys;
}

// A key that exists, with the same name, elsewhere (`lr` under train → optim.lr).
std::string same_name_elsewhere(const std::string& path) {
  const std::string key = last_component(path);
  for (const Field& f : schema())
    if (f.path != path && last_component(f.path) == key) return f.path;
  return "";
}

// ---------------------------------------------------------------------------------------------
// Where a value came from, so a range check made after everything is applied can still name the
// file line or the --set flag that set it.

struct Origin {
  std::string prefix;         // "FILE:LINE:COL: ", "FILE: " or "--set a.b=c: "
  std::string override_path;  // the path an --set names; its message need not repeat the key
};

std::string at(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null()) return source + ": ";
  return source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1) +
         ": ";
}

[[noreturn]] void fail(const Origin& origin, const std::string& path, const std::string& what) {
  if (!origin.override_path.empty() && origin.override_path == path)
    throw InputError(origin.prefix + what);
  throw InputError(origin.prefix + path + ": " + what);
}

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) { cfg_.source = source_; }

  void parse_text(const std::string& text);
  void apply_override(const std::string& flag);
  void validate() const;
  JobConfig result() const { return cfg_; }

 private:
  void walk_map(const YAML::Node& map, const std::string& prefix);
  void set_field(const Field& f, const YAML::Node& value, const Origin& origin);
  Origin origin_of(const std::string& path) const;
  void check_model() const;
  void check_ranges() const;

  std::string source_;
  JobConfig cfg_;
  std::map<std::string, Origin> origins_;  // fields and sections seen, by path
};

void Parser::parse_text(const std::string& text) {
  YamlDocuments docs;
  try {
    docs = load_yaml_documents(text);
  } catch (const YAML::ParserException& e) {
    throw InputError(at(source_, e.mark) + "YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw InputError(at(source_, e.mark) + e.msg);
  }
  if (docs.count > 1)
    throw InputError(at(source_, docs.second_start) + "expected one YAML document, found " +
                     std::to_string(docs.count));
  if (docs.count == 0 || docs.first.IsNull()) return;  // an empty file: every default
  if (!docs.first.IsMap())
    throw InputError(at(source_, docs.first.Mark()) +
                     "expected a map of sections (model, data, train, ...) at the top level, got " +
                     describe(docs.first));
  walk_map(docs.first, "");
}

void Parser::walk_map(const YAML::Node& map, const std::string& prefix) {
  std::map<std::string, YAML::Mark> seen;  // yaml-cpp keeps duplicate keys silently; we do not
  for (const auto& entry : map) {
    // Copies: yaml-cpp's iterator hands out temporaries; a Node copy is a cheap shared handle.
    const YAML::Node key = entry.first;
    const YAML::Node value = entry.second;
    const YAML::Mark mark = key.Mark();
    if (!key.IsScalar())
      throw InputError(at(source_, mark) + "expected a key name, got " + describe(key));
    const std::string path = join(prefix, key.Scalar());
    if (auto [first, inserted] = seen.emplace(key.Scalar(), mark); !inserted)
      throw InputError(at(source_, mark) + "duplicate key '" + path + "' (first set at line " +
                       std::to_string(first->second.line + 1) + ")");
    const Origin origin{at(source_, mark), ""};
    if (const Field* f = find_field(path)) {
      set_field(*f, value, origin);
    } else if (is_map_path(path)) {
      origins_[path] = origin;
      if (!value.IsNull() && !value.IsMap())  // an empty section keeps its defaults
        fail(origin, path, "expected a map of keys, got " + describe(value));
      if (value.IsMap()) walk_map(value, path);
    } else {
      std::string hint = closest(key.Scalar(), child_keys(prefix));
      if (hint.empty()) hint = same_name_elsewhere(path);
      throw InputError(origin.prefix + "unknown key " + shown_value(path) + did_you_mean(hint));
    }
  }
}

void Parser::set_field(const Field& f, const YAML::Node& value, const Origin& origin) {
  const std::string err = f.set(cfg_, value);
  if (!err.empty()) fail(origin, f.path, err);
  origins_[f.path] = origin;
}

void Parser::apply_override(const std::string& flag) {
  const size_t eq = flag.find('=');
  if (eq == std::string::npos)
    throw InputError("--set " + (flag.size() > 120 ? flag.substr(0, 120) + "..." : flag) +
                     ": expected section.key=value (e.g. train.steps=10)");
  // Trimmed, so "train.steps = 5" (quoted in the shell) names the same key.
  std::string path = flag.substr(0, eq);
  path.erase(0, path.find_first_not_of(" \t"));
  path.erase(path.find_last_not_of(" \t") + 1);
  const std::string text = flag.substr(eq + 1);
  const std::string shown = flag.size() > 120 ? flag.substr(0, 120) + "..." : flag;
  const Origin origin{"--set " + shown + ": ", path};
  const Field* f = find_field(path);
  if (f == nullptr) {
    if (is_map_path(path))
      throw InputError(origin.prefix + "'" + path + "' is a section; set one of its keys, e.g. '" +
                       join(path, child_keys(path).front()) + "'");
    std::vector<std::string> paths;
    for (const Field& g : schema()) paths.push_back(g.path);
    std::string hint = closest(path, paths);
    if (hint.empty()) hint = same_name_elsewhere(path);
    throw InputError(origin.prefix + "unknown key " + shown_value(path) + did_you_mean(hint));
  }
  YAML::Node value;
  try {
    value = YAML::Load(text);  // the value is a YAML scalar, exactly as it would be in the file
  } catch (const YAML::Exception& e) {
    throw InputError(origin.prefix + "invalid YAML value: " + e.msg);
  }
  set_field(*f, value, origin);
}

// The origin of `path`, else of its nearest enclosing section, else just the file.
Origin Parser::origin_of(const std::string& path) const {
  for (std::string p = path; !p.empty();) {
    if (auto it = origins_.find(p); it != origins_.end()) return it->second;
    const size_t dot = p.rfind('.');
    p = dot == std::string::npos ? "" : p.substr(0, dot);
  }
  return {source_ + ": ", ""};
}

// ModelConfig::validate owns the model's rules; it names the field ("model.n_heads: ..."), and we
// put the location of that field in front.
void Parser::check_model() const {
  try {
    cfg_.model.validate();
  } catch (const InputError& e) {
    const std::string msg = e.what();
    const size_t colon = msg.find(": ");
    if (!msg.starts_with("model.") || colon == std::string::npos)
      throw InputError(origin_of("model").prefix + msg);
    fail(origin_of(msg.substr(0, colon)), msg.substr(0, colon), msg.substr(colon + 2));
  }
}

// More OpenMP threads than this per rank is a typo, not a machine (libgomp crashed at 100000).
constexpr int64_t kMaxThreads = 1024;
// Ranks along one parallel axis: far above any job, far below int overflow of their products.
constexpr int64_t kMaxRanks = int64_t{1} << 20;

// Range checks run once everything (file and --set) is applied, so cross-key rules see the final
// values.
void Parser::check_ranges() const {
  const JobConfig& c = cfg_;
  auto check = [this](bool ok, const std::string& path, const std::string& what) {
    if (!ok) fail(origin_of(path), path, what);
  };
  auto at_least = [&](const std::string& path, int64_t v, int64_t lo) {
    check(v >= lo, path, "expected a value >= " + std::to_string(lo) + ", got " + format_value(v));
  };
  auto in_range = [&](const std::string& path, int64_t v, int64_t lo, int64_t hi) {
    check(v >= lo && v <= hi, path,
          "expected a value in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
              format_value(v));
  };
  auto positive = [&](const std::string& path, float v) {
    check(v > 0.f, path, "expected a value > 0, got " + format_value(v));
  };
  auto non_negative = [&](const std::string& path, float v) {
    check(v >= 0.f, path, "expected a value >= 0, got " + format_value(v));
  };
  auto unit = [&](const std::string& path, float v) {  // [0, 1): betas and momentum
    check(v >= 0.f && v < 1.f, path, "expected a value in [0, 1), got " + format_value(v));
  };

  check(!c.data.train.empty(), "data.train",
        "expected the training token shards (a .bin file, a directory or a glob), got nothing");
  // Upper bounds keep every product of sizes (tokens per step, micro-batches per rank) far from
  // int64 overflow; whether the job fits the machine is checked before anything is allocated
  // (launch/memory_estimate.h).
  in_range("data.seq_len", c.data.seq_len, 1, int64_t{1} << 24);
  at_least("train.steps", c.train.steps, 1);
  in_range("train.global_batch", c.train.global_batch, 1, INT32_MAX);
  in_range("train.micro_batch", c.train.micro_batch, 1, INT32_MAX);
  at_least("train.eval_every", c.train.eval_every, 0);
  at_least("train.eval_batches", c.train.eval_batches, 1);
  in_range("train.threads", c.train.threads, 0, kMaxThreads);
  at_least("train.max_memory_mb", c.train.max_memory_mb, 0);
  check(
      c.train.collective_timeout_s >= 1 && c.train.collective_timeout_s <= 86400,
      "train.collective_timeout_s",
      "expected a value in [1, 86400] seconds, got " + format_value(c.train.collective_timeout_s));
  at_least("train.max_skipped", c.train.max_skipped, 1);
  positive("optim.lr", c.optim.lr);
  non_negative("optim.min_lr", c.optim.min_lr);
  at_least("optim.warmup_steps", c.optim.warmup_steps, 0);
  unit("optim.beta1", c.optim.beta1);
  unit("optim.beta2", c.optim.beta2);
  positive("optim.eps", c.optim.eps);
  non_negative("optim.weight_decay", c.optim.weight_decay);
  unit("optim.momentum", c.optim.momentum);
  non_negative("optim.grad_clip", c.optim.grad_clip);
  in_range("parallel.dp", c.parallel.dp, 1, kMaxRanks);
  in_range("parallel.sp", c.parallel.sp, 1, kMaxRanks);
  in_range("parallel.pp", c.parallel.pp, 1, kMaxRanks);
  check(c.parallel.zero_stage >= 0 && c.parallel.zero_stage <= 3, "parallel.zero_stage",
        "expected a value in [0, 3], got " + format_value(c.parallel.zero_stage));
  check(!c.offload.dir.empty(), "offload.dir",
        "expected a directory for the swap files, got nothing");
  at_least("offload.capacity_gb", c.offload.capacity_gb, 1);
  {
    // Whether the node exists is a property of the machine, checked when the tier is built.
    const std::string& n = c.offload.cxl_node;
    const bool number = !n.empty() && n.size() <= 9 && std::all_of(n.begin(), n.end(), [](char ch) {
      return ch >= '0' && ch <= '9';
    });
    check(n == "auto" || number, "offload.cxl_node",
          "expected auto or a NUMA node number, got '" + n + "'");
  }
  at_least("offload.keep_last", c.offload.keep_last, 0);
  at_least("offload.writes_in_flight", c.offload.writes_in_flight, 1);
  at_least("offload.budget_mb", c.offload.budget_mb, 0);
  check(c.offload.policy != "auto" || c.offload.budget_mb > 0 || c.train.max_memory_mb > 0,
        "offload.policy",
        "auto needs a memory budget: set offload.budget_mb (activation memory) or "
        "train.max_memory_mb (everything)");
  check(c.offload.queue_depth >= 1 && c.offload.queue_depth <= 4096, "offload.queue_depth",
        "expected a value in [1, 4096], got " + format_value(c.offload.queue_depth));
  // Direct I/O moves whole aligned units: a request size of whole 4 KiB pages fits every device.
  check(c.offload.block_kb >= 4 && c.offload.block_kb % 4 == 0 && c.offload.block_kb <= (1 << 20),
        "offload.block_kb",
        "expected a multiple of 4 in [4, 1048576], got " + format_value(c.offload.block_kb));
  check(!c.checkpoint.resume.empty(), "checkpoint.resume",
        "expected auto, never or a checkpoint directory, got nothing");
  at_least("checkpoint.every", c.checkpoint.every, 0);
  at_least("checkpoint.keep_last", c.checkpoint.keep_last, 0);
  at_least("log.every", c.log.every, 1);

  // Every data-parallel rank runs the same whole number of micro-batches per step.
  const int64_t per_step = c.train.micro_batch * c.parallel.dp;
  check(c.train.global_batch % per_step == 0, "train.global_batch",
        "expected a multiple of train.micro_batch * parallel.dp = " +
            std::to_string(c.train.micro_batch) + " * " + std::to_string(c.parallel.dp) + " = " +
            std::to_string(per_step) + ", got " + std::to_string(c.train.global_batch) +
            " (each data-parallel rank runs global_batch / (micro_batch * dp) micro-batches per "
            "step)");
  if (const auto problem = pipeline_key_problem(c)) check(false, problem->key, problem->what);
  if (const auto problem = monitor_key_problem(c)) check(false, problem->key, problem->what);
}

void Parser::validate() const {
  check_model();
  check_ranges();
}

// yaml-cpp breaks lines at LF only: a file saved with old Mac line endings (CR alone) read as one
// long comment line. A lone CR becomes LF, so line numbers are those an editor shows; CRLF stays.
std::string normalise_line_endings(const std::string& text) {
  std::string out = text;
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] == '\r' && (i + 1 == out.size() || out[i + 1] != '\n')) out[i] = '\n';
  return out;
}

}  // namespace

Precision train_precision(const TrainConfig& t) {
  return t.precision == "bf16" ? Precision::bf16 : Precision::fp32;
}

JobConfig parse_job_config(const std::string& yaml_text, const std::string& source,
                           const std::vector<std::string>& overrides) {
  Parser parser(source);
  parser.parse_text(normalise_line_endings(yaml_text));
  for (const std::string& flag : overrides) parser.apply_override(flag);
  parser.validate();
  return parser.result();
}

JobConfig load_job_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError("cannot read job file '" + path + "': it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot read job file '" + path + "': " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError("cannot read job file '" + path + "': read failed");
  return parse_job_config(text.str(), path, overrides);
}

// Emits every key in schema order, opening each section (and the nested linear_attention map)
// when the path prefix changes, so the layout matches a hand-written job file.
std::string dump_job_config(const JobConfig& cfg) {
  std::string out = "# Strata job config, fully resolved";
  if (!cfg.source.empty()) {  // a comment line: keep a newline in the name from ending it
    std::string name = cfg.source;
    std::replace(name.begin(), name.end(), '\n', ' ');
    out += " (from " + name + ")";
  }
  out += "\n";
  std::vector<std::string> open;  // the map path components currently open
  for (const Field& f : schema()) {
    std::vector<std::string> parts;
    std::stringstream ss(f.path);
    for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
    const std::vector<std::string> maps(parts.begin(), parts.end() - 1);
    size_t common = 0;
    while (common < open.size() && common < maps.size() && open[common] == maps[common]) ++common;
    for (size_t d = common; d < maps.size(); ++d) out += std::string(2 * d, ' ') + maps[d] + ":\n";
    open = maps;
    out += std::string(2 * maps.size(), ' ') + parts.back() + ": " + f.get(cfg) + "\n";
  }
  return out;
}

}  // namespace strata
