// format_pipeline_plan: what `strata schedule` prints (docs/PIPELINE.md, "strata schedule").
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "launch/pipeline_plan.h"

namespace strata {
namespace {

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", v);
  return text;
}

// Rows of cells as columns separated by " | ", each as wide as its widest cell.
std::string aligned(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) {
      if (width.size() <= c) width.push_back(0);
      width[c] = std::max(width[c], row[c].size());
    }
  std::string text;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      if (c) line += " | ";
      line += row[c] + std::string(width[c] - row[c].size(), ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);
    text += line + "\n";
  }
  return text;
}

// "embedding, blocks 0-1", "blocks 2-3", "block 7, head"; with vocabulary parallelism the
// embedding and the head are every rank's (vocab_line), so only the blocks are named.
std::string holds(const StagePlan& st, int64_t n_layers, bool vocab_parallel) {
  std::string parts = st.has_embedding() && !vocab_parallel ? "embedding, " : "";
  const int64_t first = st.first_block(), last = st.end_block(n_layers) - 1;
  parts += first == last ? "block " + std::to_string(first)
                         : "blocks " + std::to_string(first) + "-" + std::to_string(last);
  if (st.end_unit == n_layers + 2 && !vocab_parallel) parts += ", head";
  return parts;
}

// What every rank runs besides its stages under vocabulary parallelism, per micro-batch.
std::string vocab_line(const PipelinePlan& plan) {
  const SimCosts& c = plan.costs;
  return "vocabulary parallel: the embedding and the head + loss split by vocabulary rows over "
         "all " +
         std::to_string(plan.pp) + " ranks; each rank per micro-batch: S " + number(c.vocab_s) +
         ", T " + number(c.vocab_t) + ", EMBED_F " + number(c.embed_f) + ", EMBED_B " +
         number(c.embed_b) + " (EMBED_F, S, EMBED_B collectives over all ranks)\n";
}

std::string placement_table(const PipelinePlan& plan, const JobConfig& cfg) {
  const double scale = plan.peak_flops > 0 ? 1 / plan.peak_flops : 1e-9;
  std::vector<std::vector<std::string>> rows = {
      {"stage", "rank", "units", "holds", "forward", "backward (input + weight)"}};
  for (const StagePlan& st : plan.stages)
    rows.push_back(
        {std::to_string(st.stage), std::to_string(st.rank),
         std::to_string(st.first_unit) + "-" + std::to_string(st.end_unit - 1),
         holds(st, cfg.model.n_layers, plan.vocab_parallel), number(st.forward_flops * scale),
         number(st.backward_flops * scale) + " (" + number(st.backward_input_flops * scale) +
             " + " + number(st.backward_weight_flops * scale) + ")"});
  return aligned(rows);
}

}  // namespace

std::string format_pipeline_plan(const PipelinePlan& plan, const JobConfig& cfg) {
  const bool from_file = !cfg.parallel.schedule_file.empty();
  std::string text = "pipeline plan: pp=" + std::to_string(plan.pp) +
                     ", virtual_stages=" + std::to_string(plan.virtual_stages) + ", " +
                     std::to_string(plan.micro_batches) + " micro-batches per step, schedule " +
                     (from_file ? "file " : "") + plan.schedule_name + "\n";
  const int64_t chunk = cfg.data.seq_len / std::max<int64_t>(1, cfg.parallel.sp);
  text += "costs of one micro-batch (" + std::to_string(cfg.train.micro_batch) + " sequences x " +
          std::to_string(chunk) + " tokens on each rank) and times below: " +
          (plan.peak_flops > 0 ? "seconds at " + number(plan.peak_flops * 1e-9) + " GFLOP/s"
                               : std::string("GFLOP")) +
          "\n";
  text += placement_table(plan, cfg);
  if (plan.vocab_parallel) text += vocab_line(plan);
  text += '\n';  // (not "\n" + string: GCC 12's -Wrestrict misfires on it)
  text += format_schedule_table(plan.schedule, plan.sim);
  // The textbook bubble of equal stages and free messages, to judge the simulated one against.
  const int p = plan.pp, m = plan.micro_batches;
  char ideal[160];
  std::snprintf(ideal, sizeof ideal,
                "ideal bubble (p-1)/(m+p-1) = %d/%d = %.4f (%.1f%%): 1F1B with equal stages\n",
                p - 1, m + p - 1, double(p - 1) / (m + p - 1), 100.0 * (p - 1) / (m + p - 1));
  return text + ideal;
}

}  // namespace strata
