#pragma once
// What the trainer tests share, single-process and under mpirun: a job on the corpus that
// test::write_test_corpus wrote into `dir`, and the losses of a number of steps.
#include <string>
#include <vector>

#include "launch/job_config.h"
#include "launch/trainer.h"

namespace strata::test {

// `yaml` with data.train/val on <dir>/train and <dir>/val and train.run_dir <dir>/<run>, then
// `sets` (later --set overrides win, as on the command line).
inline JobConfig corpus_job(const std::string& yaml, const std::string& source,
                            const std::string& dir, const std::string& run,
                            std::vector<std::string> sets) {
  sets.insert(sets.begin(), {"data.train=" + dir + "/train", "data.val=" + dir + "/val",
                             "train.run_dir=" + dir + "/" + run});
  return parse_job_config(yaml, source, sets);
}

inline std::vector<double> train_losses(Trainer& t, int steps) {
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) losses.push_back(t.train_step().loss);
  return losses;
}

}  // namespace strata::test
