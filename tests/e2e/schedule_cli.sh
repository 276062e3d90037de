#!/usr/bin/env bash
# `strata schedule`: the pipeline plan of a job file, printed without training or MPI. A pp=4
# 1F1B job prints its stages, timeline and bubble; the schedule written by --csv and passed back
# as parallel.schedule_file prints the same plan; hand-broken schedule files and jobs the
# schedule can't serve exit 2 naming the line, the rule or both numbers.
#
# usage: bash tests/e2e/schedule_cli.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

JOB="$SRC_DIR/configs/pp4_1f1b.yaml"

# ---- the plan of a pp=4, 1F1B, 8-micro-batch job ----------------------------------------------
run "$STRATA" schedule "$JOB" --csv sched.csv
expect_exit 0 "schedule"
expect_stdout_contains "pipeline plan: pp=4, virtual_stages=1, 8 micro-batches per step, schedule 1f1b"
expect_stdout_contains "stage | rank | units | holds"
expect_stdout_matches "^0 +\| 0 +\| 0-[0-9]+ +\| embedding, block"
expect_stdout_matches "^3 +\| 3 +\| [0-9]+-9 +\| blocks? [0-9-]+, head"
expect_stdout_matches "^time +\| rank 0 +\| rank 1 +\| rank 2 +\| rank 3"
expect_stdout_matches "^step time [0-9.]+, bubble fraction 0\.[0-9]{4} \([0-9.]+%\)$"
expect_stdout_contains "ideal bubble (p-1)/(m+p-1) = 3/11 = 0.2727 (27.3%)"
expect_stdout_contains "rank 0: busy "
cp "$E2E_OUT/stdout" plan.txt
expect_file sched.csv
head -n 1 sched.csv | grep -qx "# strata pipeline schedule: pp=4 stages=4 micro_batches=8" ||
  fail "sched.csv does not start with the schedule's shape"
# Without --csv nothing is written: the plan is printed only.
mkdir bare
(cd bare && "$STRATA" schedule "$JOB" >/dev/null) || fail "strata schedule failed in bare/"
[[ -z "$(ls -A bare)" ]] || fail "strata schedule wrote files: $(ls -A bare)"

# ---- --csv round trip through parallel.schedule_file -----------------------------------------
run "$STRATA" schedule "$JOB" --set parallel.schedule_file=sched.csv
expect_exit 0 "schedule from its own CSV"
expect_stdout_contains "schedule file sched.csv"
diff <(tail -n +2 plan.txt) <(tail -n +2 "$E2E_OUT/stdout") >/dev/null ||
  fail "the plan from sched.csv differs from the generated one (past the first line)"

# ---- hand-broken schedule files --------------------------------------------------------------
# Every action of micro-batch 7 on rank 0 deleted (indexes renumbered): a missing micro-batch,
# a rule about no single line, reported against the file.
python3 - sched.csv missing.csv <<'PY'
import sys
rows, index, out = open(sys.argv[1]).read().splitlines(), {}, []
for row in rows:
    f = row.split(",")
    if len(f) == 6 and f[0].isdigit():
        if f[0] == "0" and f[4] == "7":
            continue
        f[1] = str(index.get(f[0], 0))
        index[f[0]] = int(f[1]) + 1
        row = ",".join(f)
    out.append(row)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
run "$STRATA" schedule "$JOB" --set parallel.schedule_file=missing.csv
expect_exit 2 "missing micro-batch"
expect_stderr_contains "missing.csv: pipeline schedule: stage 0 micro-batch 7 has no F"

# One line deleted as it stands: the next index is out of order, at that line.
sed '4d' sched.csv > deleted.csv
run "$STRATA" schedule "$JOB" --set parallel.schedule_file=deleted.csv
expect_exit 2 "deleted line"
expect_stderr_contains "deleted.csv:4: expected index 1 for rank 0, got 2"

# The last rank's first F and B swapped: B before its F, at the line of the B.
line=$(grep -n '^3,1,F,3,0,$' sched.csv | cut -d: -f1)
[[ -n "$line" ]] || fail "sched.csv has no row 3,1,F,3,0"
sed -e 's/^3,1,F,3,0,$/3,1,B,3,0,/' -e 's/^3,2,B,3,0,$/3,2,F,3,0,/' sched.csv > swapped.csv
run "$STRATA" schedule "$JOB" --set parallel.schedule_file=swapped.csv
expect_exit 2 "B before F"
expect_stderr_contains "swapped.csv:$line: pipeline schedule: rank 3 action #1 (3B0): backward before its F"

# A schedule file of another job's shape names both numbers.
run "$STRATA" schedule "$JOB" --set parallel.schedule_file=sched.csv --set train.global_batch=128
expect_exit 2 "schedule file of 8 micro-batches for 16"
expect_stderr_contains "has micro_batches=8, but the job runs 16 micro-batches per step"

# ---- jobs the schedule can't serve -----------------------------------------------------------
run "$STRATA" schedule "$JOB" --set train.global_batch=24
expect_exit 2 "1f1b with m < pp"
expect_stderr_contains "got 3 micro-batches for pp=4"
expect_stderr_contains "train.global_batch / (parallel.dp * train.micro_batch) = 24 / (1 * 8)"

run "$STRATA" schedule "$JOB" --set parallel.schedule=interleaved
expect_exit 2 "interleaved with one virtual stage"
expect_stderr_contains "parallel.virtual_stages: parallel.schedule interleaved needs parallel.virtual_stages >= 2"

run "$STRATA" schedule "$JOB" --set parallel.pp=3 --set parallel.pp_layers=[2,3,2]
expect_exit 2 "pp_layers summing past n_layers"
expect_stderr_contains "--set parallel.pp_layers=[2,3,2]: the entries sum to 7 blocks, but model.n_layers = 8"

run "$STRATA" schedule "$JOB" --set parallel.pp=3 --set parallel.pp_layers=[2,3,3]
expect_exit 0 "pp_layers"
expect_stdout_matches "^1 +\| 1 +\| 3-5 +\| blocks 2-4"

run "$STRATA" schedule "$JOB" --bogus
expect_exit 2 "unknown option"
expect_stderr_contains "strata schedule: unknown option '--bogus'"
