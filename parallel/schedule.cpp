#include "parallel/schedule.h"

#include <array>
#include <charconv>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace strata {
namespace {

constexpr std::array<std::pair<ActionType, std::string_view>, 13> kActionNames = {{
    {ActionType::F, "F"},
    {ActionType::B, "B"},
    {ActionType::I, "I"},
    {ActionType::W, "W"},
    {ActionType::SEND_F, "SEND_F"},
    {ActionType::RECV_F, "RECV_F"},
    {ActionType::SEND_B, "SEND_B"},
    {ActionType::RECV_B, "RECV_B"},
    {ActionType::REDUCE_GRAD, "REDUCE_GRAD"},
    {ActionType::S, "S"},
    {ActionType::T, "T"},
    {ActionType::EMBED_F, "EMBED_F"},
    {ActionType::EMBED_B, "EMBED_B"},
}};

constexpr std::string_view kCsvHeader = "rank,index,action,stage,micro_batch,peer";
constexpr std::string_view kCsvPreamble = "# strata pipeline schedule:";

// Where a CSV error is reported: "FILE:LINE: ".
struct CsvPosition {
  const std::string& file;
  int line;
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(file + ":" + std::to_string(line) + ": " + what);
  }
};

// A non-negative decimal integer filling the whole field.
int parse_count(std::string_view field, std::string_view column, const CsvPosition& at) {
  int value = -1;
  auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (field.empty() || ec != std::errc() || end != field.data() + field.size() || value < 0)
    at.fail("expected a non-negative integer for " + std::string(column) + ", got '" +
            std::string(field) + "'");
  return value;
}

std::vector<std::string_view> split_commas(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (;;) {
    size_t comma = line.find(',', start);
    fields.push_back(line.substr(start, comma == std::string_view::npos ? comma : comma - start));
    if (comma == std::string_view::npos) return fields;
    start = comma + 1;
  }
}

// "pp=4 stages=8 micro_batches=8" after the preamble's prefix, all three keys required.
void parse_preamble(std::string_view line, Schedule& schedule, const CsvPosition& at) {
  const std::string expected = std::string(kCsvPreamble) + " pp=P stages=S micro_batches=M";
  if (!line.starts_with(kCsvPreamble)) at.fail("expected the first line '" + expected + "'");
  std::istringstream words(std::string(line.substr(kCsvPreamble.size())));
  std::string word;
  bool seen_pp = false, seen_stages = false, seen_m = false;
  while (words >> word) {
    size_t eq = word.find('=');
    if (eq == std::string::npos) at.fail("expected key=value in '" + expected + "'");
    std::string_view key = std::string_view(word).substr(0, eq);
    int value = parse_count(std::string_view(word).substr(eq + 1), key, at);
    if (key == "pp" && !seen_pp) {
      schedule.pp = value, seen_pp = true;
    } else if (key == "stages" && !seen_stages) {
      schedule.stages = value, seen_stages = true;
    } else if (key == "micro_batches" && !seen_m) {
      schedule.micro_batches = value, seen_m = true;
    } else {
      at.fail("unexpected or repeated key '" + std::string(key) + "' in '" + expected + "'");
    }
  }
  if (!seen_pp || !seen_stages || !seen_m) at.fail("expected '" + expected + "'");
  if (schedule.pp < 1 || schedule.stages < 1 || schedule.micro_batches < 1)
    at.fail("pp, stages and micro_batches must be >= 1");
  if (schedule.stages % schedule.pp != 0)
    at.fail("stages (" + std::to_string(schedule.stages) + ") must be a multiple of pp (" +
            std::to_string(schedule.pp) + ")");
  schedule.ranks.assign(schedule.pp, {});
}

// One data row; appends the action to its rank, enforcing the rank grouping and the index.
void parse_row(std::string_view line, Schedule& schedule, const CsvPosition& at) {
  std::vector<std::string_view> fields = split_commas(line);
  if (fields.size() != 6)
    at.fail("expected 6 comma-separated fields (" + std::string(kCsvHeader) + "), got " +
            std::to_string(fields.size()));
  int rank = parse_count(fields[0], "rank", at);
  if (rank >= schedule.pp)
    at.fail("rank " + std::to_string(rank) + " out of range [0, " + std::to_string(schedule.pp) +
            ")");
  for (int later = rank + 1; later < schedule.pp; ++later)
    if (!schedule.ranks[later].empty())
      at.fail("rows must be grouped by rank in ascending order (rank " + std::to_string(rank) +
              " after rank " + std::to_string(later) + ")");
  int index = parse_count(fields[1], "index", at);
  int expected_index = static_cast<int>(schedule.ranks[rank].size());
  if (index != expected_index)
    at.fail("expected index " + std::to_string(expected_index) + " for rank " +
            std::to_string(rank) + ", got " + std::to_string(index));
  std::optional<ActionType> type = parse_action_name(fields[2]);
  if (!type) at.fail("unknown action '" + std::string(fields[2]) + "'");
  Action action{.type = *type};
  action.stage = parse_count(fields[3], "stage", at);
  if (*type == ActionType::REDUCE_GRAD) {
    if (!fields[4].empty()) at.fail("expected an empty micro_batch for REDUCE_GRAD");
    action.micro_batch = kNoMicroBatch;
  } else {
    action.micro_batch = parse_count(fields[4], "micro_batch", at);
  }
  if (is_communication(*type)) {
    action.peer = parse_count(fields[5], "peer", at);
  } else if (!fields[5].empty()) {
    at.fail("expected an empty peer for " + std::string(fields[2]));
  }
  schedule.ranks[rank].push_back(action);
}

}  // namespace

std::string_view action_name(ActionType type) {
  for (const auto& [t, name] : kActionNames)
    if (t == type) return name;
  STRATA_CHECK(false, "action type without a name");
}

std::optional<ActionType> parse_action_name(std::string_view name) {
  for (const auto& [t, n] : kActionNames)
    if (n == name) return t;
  return std::nullopt;
}

bool is_compute(ActionType type) {
  return type == ActionType::F || type == ActionType::B || type == ActionType::I ||
         type == ActionType::W;
}

bool is_communication(ActionType type) {
  return type == ActionType::SEND_F || type == ActionType::RECV_F || type == ActionType::SEND_B ||
         type == ActionType::RECV_B;
}

bool is_vocab(ActionType type) {
  return type == ActionType::S || type == ActionType::T || type == ActionType::EMBED_F ||
         type == ActionType::EMBED_B;
}

bool is_vocab_collective(ActionType type) {
  return type == ActionType::S || type == ActionType::EMBED_F || type == ActionType::EMBED_B;
}

bool has_vocab_passes(const Schedule& schedule) {
  for (const auto& actions : schedule.ranks)
    for (const Action& a : actions)
      if (is_vocab(a.type)) return true;
  return false;
}

bool is_lowered(const Schedule& schedule) {
  for (const auto& actions : schedule.ranks)
    for (const Action& a : actions)
      if (is_communication(a.type) || a.type == ActionType::REDUCE_GRAD) return true;
  return false;
}

std::string format_action(const Action& action) {
  std::string text = std::to_string(action.stage) + std::string(action_name(action.type));
  if (action.micro_batch != kNoMicroBatch) text += std::to_string(action.micro_batch);
  return text;
}

std::string write_schedule_csv(const Schedule& schedule) {
  std::ostringstream out;
  out << kCsvPreamble << " pp=" << schedule.pp << " stages=" << schedule.stages
      << " micro_batches=" << schedule.micro_batches << "\n"
      << kCsvHeader << "\n";
  for (size_t rank = 0; rank < schedule.ranks.size(); ++rank) {
    for (size_t index = 0; index < schedule.ranks[rank].size(); ++index) {
      const Action& a = schedule.ranks[rank][index];
      out << rank << ',' << index << ',' << action_name(a.type) << ',' << a.stage << ',';
      if (a.micro_batch != kNoMicroBatch) out << a.micro_batch;
      out << ',';
      if (is_communication(a.type)) out << a.peer;
      out << "\n";
    }
  }
  return out.str();
}

Schedule parse_schedule_csv(const std::string& text, const std::string& file_name,
                            std::vector<std::vector<int>>* line_of) {
  Schedule schedule;
  std::istringstream in(text);
  std::string line;
  int line_number = 0;
  if (line_of) line_of->clear();
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    CsvPosition at{file_name, line_number};
    if (line_number == 1) {
      parse_preamble(line, schedule, at);
      if (line_of) line_of->assign(schedule.pp, {});
    } else if (line_number == 2) {
      if (line != kCsvHeader) at.fail("expected the header '" + std::string(kCsvHeader) + "'");
    } else if (!line.empty()) {
      parse_row(line, schedule, at);
      if (line_of) {
        int rank = parse_count(split_commas(line)[0], "rank", at);
        (*line_of)[rank].push_back(line_number);
      }
    }
  }
  if (line_number < 2)
    CsvPosition{file_name, line_number + 1}.fail(
        line_number == 0 ? "expected the line '" + std::string(kCsvPreamble) + " ...'"
                         : "expected the header '" + std::string(kCsvHeader) + "'");
  return schedule;
}

}  // namespace strata
