#include "parallel/schedule_file.h"

#include <fstream>
#include <sstream>

#include "parallel/schedule_check.h"
#include "parallel/schedule_sim.h"

namespace strata {

Schedule load_schedule_csv(const std::string& text, const std::string& file_name) {
  std::vector<std::vector<int>> line_of;
  Schedule schedule = parse_schedule_csv(text, file_name, &line_of);
  try {
    simulate_schedule(schedule);  // validates first
  } catch (const ScheduleRuleError& e) {
    bool located = e.rank() >= 0 && e.rank() < static_cast<int>(line_of.size()) && e.index() >= 0 &&
                   e.index() < static_cast<int>(line_of[e.rank()].size());
    std::string where =
        located ? file_name + ":" + std::to_string(line_of[e.rank()][e.index()]) : file_name;
    throw InputError(where + ": " + e.what());
  }
  return schedule;
}

Schedule load_schedule_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the pipeline schedule file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(path + ": cannot read the pipeline schedule file");
  return load_schedule_csv(text.str(), path);
}

}  // namespace strata
