# Shared helpers of the end-to-end CLI tests (sourced, not a test itself: only *.sh files in
# tests/e2e are registered with ctest).
#
# A test script starts with
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
#     e2e_init "$@"          # STRATA_BINARY [SOURCE_DIR]
# and then runs in a fresh temporary directory ($E2E_WORK, the current directory), removed on
# exit. Every assertion failure prints "FAIL: ..." with the command's output and exits 1.

set -euo pipefail

# ---- setup -----------------------------------------------------------------------------------

e2e_init() {
  if [[ $# -lt 1 ]]; then
    echo "usage: bash $0 STRATA_BINARY [SOURCE_DIR]" >&2
    exit 2
  fi
  STRATA=$(realpath "$1")
  SRC_DIR=$(realpath "${2:-$(dirname "${BASH_SOURCE[0]}")/../..}")
  [[ -x "$STRATA" ]] || { echo "FAIL: strata binary '$1' is not executable" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "FAIL: python3 is required" >&2; exit 1; }
  E2E_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/strata-e2e.XXXXXX")
  E2E_OUT="$E2E_ROOT/captured"   # stdout/stderr of the last `run` (outside the work dir)
  E2E_WORK="$E2E_ROOT/work"
  mkdir -p "$E2E_OUT" "$E2E_WORK"
  E2E_START=$SECONDS
  trap 'e2e_cleanup' EXIT
  cd "$E2E_WORK"
  # Keep the runs light and reproducible whatever the machine: 2 threads per process.
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
  # Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine (parallel builds,
  # other tests) spinning threads made a 0.6 s run take 20 s.
  export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
}

e2e_cleanup() {
  local rc=$?
  cd /
  rm -rf "$E2E_ROOT"
  if [[ $rc -eq 0 ]]; then
    echo "PASS: $(basename "$0") ($((SECONDS - E2E_START)) s)"
  else
    echo "FAILED: $(basename "$0") (exit $rc after $((SECONDS - E2E_START)) s)" >&2
  fi
  exit $rc
}

# The tiny model every test trains (about 40k parameters, a few ms per step on 2 cores).
TINY_SETS=(
  --set model.dim=32 --set model.n_layers=2 --set model.n_heads=2 --set model.n_kv_heads=1
  --set model.ffn_dim=64 --set data.seq_len=32 --set train.global_batch=4
  --set train.micro_batch=2 --set train.threads=2
)

# make_corpus DIR: a few hundred KB of text. Fortune files when installed (STRATA_E2E_FORTUNES
# overrides their directory), else generated text.
make_corpus() {
  local dir=$1 f n=0 src=${STRATA_E2E_FORTUNES:-/usr/share/games/fortunes}
  mkdir -p "$dir"
  for f in computers science art; do
    if [[ -f $src/$f ]]; then
      cp "$src/$f" "$dir/$f.txt"
      n=$((n + 1))
    fi
  done
  if [[ $n -eq 0 ]]; then
    local i
    for i in $(seq 1 400); do
      cat <<EOF
Paragraph $i. The quick brown fox jumps over the lazy dog while the tiny model learns to
predict the next byte of this text. A linear attention layer keeps a running state of keys and
values; a softmax attention layer looks back at every earlier token. Number $((i * 7 % 13)) is
followed by number $((i * 11 % 17)), and the pattern repeats, which is easy to learn.
%
EOF
    done > "$dir/generated.txt"
  fi
}

# prepare_corpus DIR: make_corpus + prepare-data into DIR/data (train_*.bin, val_*.bin).
prepare_corpus() {
  local dir=$1
  make_corpus "$dir/corpus"
  run "$STRATA" prepare-data --input "$dir/corpus" --output "$dir/data"
  expect_exit 0 "prepare-data"
  [[ -f "$dir/data/train_000000.bin" && -f "$dir/data/val_000000.bin" ]] ||
    fail "prepare-data did not write $dir/data/train_000000.bin and val_000000.bin"
}

# require_mpirun: skips the test (77) where mpirun is missing; sets MPIRUN (as root, more ranks
# than cores, one OpenMP thread per rank with passive waits: the 2-core machines oversubscribe).
require_mpirun() {
  command -v mpirun >/dev/null || { echo "mpirun not found: skipped"; exit 77; }
  MPIRUN=(mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE)
}

# ---- running and asserting -------------------------------------------------------------------

E2E_RC=0
E2E_CMD=""

# run CMD...: runs it, capturing stdout, stderr and the exit code (never fails by itself).
run() {
  E2E_CMD="$*"
  E2E_RC=0
  "$@" >"$E2E_OUT/stdout" 2>"$E2E_OUT/stderr" || E2E_RC=$?
}

last_stdout() { cat "$E2E_OUT/stdout"; }
last_stderr() { cat "$E2E_OUT/stderr"; }

fail() {
  {
    echo "FAIL: $*"
    if [[ -n "$E2E_CMD" ]]; then
      echo "  last command: $E2E_CMD"
      echo "  exit code:    $E2E_RC"
      echo "  --- stdout (last 20 lines) ---"
      tail -n 20 "$E2E_OUT/stdout" 2>/dev/null | sed 's/^/  | /'
      echo "  --- stderr (last 20 lines) ---"
      tail -n 20 "$E2E_OUT/stderr" 2>/dev/null | sed 's/^/  | /'
    fi
  } >&2
  exit 1
}

# expect_exit N [WHAT]: the last `run` exited with N.
expect_exit() {
  local want=$1 what=${2:-}
  [[ "$E2E_RC" -eq "$want" ]] || fail "${what:+$what: }expected exit code $want, got $E2E_RC"
}

# expect_stderr_contains TEXT [WHAT]: fixed-string match in the last stderr.
expect_stderr_contains() {
  grep -qF -- "$1" "$E2E_OUT/stderr" || fail "${2:+$2: }expected stderr to contain '$1'"
}
expect_stdout_contains() {
  grep -qF -- "$1" "$E2E_OUT/stdout" || fail "${2:+$2: }expected stdout to contain '$1'"
}
# expect_stderr_matches REGEX [WHAT]: extended-regex match in the last stderr.
expect_stderr_matches() {
  grep -qE -- "$1" "$E2E_OUT/stderr" || fail "${2:+$2: }expected stderr to match /$1/"
}
expect_stdout_matches() {
  grep -qE -- "$1" "$E2E_OUT/stdout" || fail "${2:+$2: }expected stdout to match /$1/"
}

expect_file() { [[ -f "$1" ]] || fail "expected file '$1' to exist"; }
expect_dir() { [[ -d "$1" ]] || fail "expected directory '$1' to exist"; }
expect_absent() { [[ ! -e "$1" ]] || fail "expected '$1' not to exist"; }

# tree_snapshot: every path under the current directory with its size and mtime, sorted.
tree_snapshot() { find . -printf '%p %s %T@\n' | LC_ALL=C sort; }

# metrics_losses FILE: "step loss" per step, the last line of each step (metrics.jsonl is
# appended to by resumed runs), losses exactly as written.
metrics_losses() {
  python3 - "$1" <<'EOF'
import json, re, sys
last = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    rec = json.loads(line)
    # the loss exactly as printed, so the comparison is bit-for-bit of the text
    m = re.search(r'"loss":([^,}]+)', line)
    last[int(rec["step"])] = m.group(1)
for s in sorted(last):
    print(s, last[s])
EOF
}
