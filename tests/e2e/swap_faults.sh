#!/usr/bin/env bash
# Faults of the nvme activation swapper lose nothing: every fault gives a clear error naming the
# tier and the swap file, or the documented fallback with exactly the losses of a run that keeps
# its activations in memory (offload.policy=keep, which swapping matches bit for bit), and no swap
# file outlives the run that made it.
#
#   io_uring refused (seccomp, as containers do) or STRATA_IO_BACKEND=threads: the thread-pool
#       backend, said in the log, with the same losses;
#   swap file deleted under the run: the open descriptor keeps it alive; the same losses;
#   swap file truncated under the run (once, right after the first write lands, so a later
#       write re-extends the file over a hole; and repeatedly): an error naming tier, file and
#       offset, never different losses;
#   file system full (a 1 MiB tmpfs, root only): "No space left on device" naming tier and file,
#       the checkpoints from before untouched, and the run resumes from them elsewhere;
#   another error mid-run (a non-finite gradient norm), SIGTERM (checkpoint, exit
#       143), SIGHUP (exit 129): the swap file is removed; SIGKILL leaves it, and the next run in the same
#       directory removes it as stale.
# (offload.capacity_gb is whole GiB, at least 1: more than a test run can swap. The tier's own
# capacity error is covered by tests/unit/test_activation_swap.cpp.)
#
# usage: bash tests/e2e/swap_faults.sh STRATA_BINARY [SOURCE_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
e2e_init "$@"

# On any exit: no background run left going (a failed assertion may leave one), and the tmpfs of
# the ENOSPC case, mounted under $E2E_ROOT, unmounted before lib.bash removes the tree.
FULL_MNT=""
BG_PID=""
swap_faults_cleanup() {
  local rc=$?
  set +e  # (a failing command here must not end the trap before lib.bash's cleanup)
  if [[ -n "$BG_PID" ]] && kill -KILL "$BG_PID" 2>/dev/null; then wait "$BG_PID" 2>/dev/null; fi
  if [[ -n "$FULL_MNT" ]] && mountpoint -q "$FULL_MNT" 2>/dev/null; then
    umount "$FULL_MNT" 2>/dev/null || umount -l "$FULL_MNT" 2>/dev/null || true
  fi
  (exit $rc)
  e2e_cleanup
}
trap swap_faults_cleanup EXIT

prepare_corpus .

SWAP=$PWD/swap  # offload.dir of every run (absolute: the messages name it)
mkdir -p "$SWAP"
N=6
# configs/swap_nvme.yaml made tiny: 4 blocks (the first 3 swapped), 64-token sequences, 2
# micro-batches of 2. 20 warm-up steps: the learning rate of step s does not depend on
# train.steps, so runs of different lengths share their first steps' losses.
JOB=("$SRC_DIR/configs/swap_nvme.yaml" --set data.train=data/train --set data.val=data/val
  --set data.seq_len=64 --set train.global_batch=4 --set train.micro_batch=2
  --set train.threads=2 --set optim.warmup_steps=20 --set train.eval_every=0 --set log.every=1 --set checkpoint.every=0
  --set checkpoint.keep_last=0 --set offload.dir="$SWAP")

swap_files() { find "$1" -maxdepth 1 -name 'strata_swap_*' 2>/dev/null | LC_ALL=C sort; }
expect_no_swap_file() {  # DIR WHAT
  local left
  left=$(swap_files "$1")
  [[ -z "$left" ]] || fail "$2: swap file(s) left behind: $left"
}

# same_losses RUN_DIR WHAT: the run's per-step losses (exact strings of metrics.jsonl) equal the
# reference's for the steps it has; all $N steps unless PARTIAL=1.
same_losses() {
  local dir=$1 what=$2 n
  n=$(metrics_losses "$dir/metrics.jsonl" | wc -l)
  if [[ "${PARTIAL:-0}" != 1 && $n -ne $N ]]; then fail "$what: $n steps in metrics, expected $N"; fi
  metrics_losses "$dir/metrics.jsonl" >"$dir.losses"
  diff <(head -n "$n" ref.losses) "$dir.losses" >&2 ||
    fail "$what: losses differ from the offload.policy=keep run's (diff above): a wrong result"
}

# expect_swap_error FILE REGEX WHAT: the run failed (non-zero exit) with one "strata: error:"
# line naming the tier, the swap file, and matching REGEX.
expect_swap_error() {
  local file=$1 re=$2 what=$3 line
  [[ $E2E_RC -ne 0 ]] || fail "$what: expected a non-zero exit"
  line=$(grep -E '^strata: error: ' "$E2E_OUT/stderr" | tail -n 1) || true
  [[ -n "$line" ]] || fail "$what: no 'strata: error:' line"
  grep -qF -- "$file" <<<"$line" || fail "$what: the error does not name the swap file $file: $line"
  grep -qF -- "swap tier nvme" <<<"$line" || fail "$what: the error does not name the tier: $line"
  grep -qE -- "$re" <<<"$line" || fail "$what: the error does not match /$re/: $line"
  if grep -qF 'internal check failed' "$E2E_OUT/stderr"; then
    fail "$what: an internal check failed while handling the fault"
  fi
}

# Background runs: start_bg NAME ARGS... (sets BG_PID, output in NAME.out/NAME.err), finish_bg
# NAME WHAT (waits; its output and exit code become the last `run`'s for the expect_* helpers).
start_bg() {
  local name=$1
  shift
  "$STRATA" train "${JOB[@]}" "$@" >"$name.out" 2>"$name.err" &
  BG_PID=$!
}
finish_bg() {
  local name=$1
  E2E_RC=0
  wait "$BG_PID" 2>/dev/null || E2E_RC=$?  # (no "Killed" notice from the shell)
  E2E_CMD="strata train ... ($2)"
  cp "$name.out" "$E2E_OUT/stdout"
  cp "$name.err" "$E2E_OUT/stderr"
}
wait_for_step() {  # NAME STEP: until the background run logs step STEP (or ends)
  local i
  for i in $(seq 1 3000); do  # up to 60 s
    grep -q "^step $2/" "$1.err" 2>/dev/null && return 0
    kill -0 "$BG_PID" 2>/dev/null || break
    sleep 0.02
  done
  grep -q "^step $2/" "$1.err" || { cat "$1.err" >&2; fail "the run never logged step $2"; }
}

# fault.py PID FILE MODE: acts on the swap file of a live process PID. MODE:
#   delete    unlink it once it holds data;
#   truncate  truncate it to 0 the moment its first write lands (the next write re-extends the
#             file, leaving a hole where live data was);
#   repeat    truncate it whenever it holds data, until the process exits.
# Prints how many times it acted.
cat >fault.py <<'EOF'
import os, sys, time
pid, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:  # an exited, unreaped process is a zombie
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

n, deadline = 0, time.monotonic() + 60
while time.monotonic() < deadline and alive():
    try:
        if os.stat(path).st_size > 0:
            if mode == "delete":
                os.unlink(path)
            else:
                os.truncate(path, 0)
            n += 1
            if mode != "repeat":
                break
            time.sleep(0.003)
    except FileNotFoundError:
        pass
    time.sleep(0.0002)
print(n)
EOF

# ---- the reference: activations kept in memory --------------------------------------------------
run "$STRATA" train "${JOB[@]}" --set train.steps=$N --set offload.policy=keep --set train.run_dir=ref
expect_exit 0 "reference run (offload.policy=keep)"
metrics_losses ref/metrics.jsonl >ref.losses
[[ $(wc -l <ref.losses) -eq $N ]] || fail "reference run: not $N steps"

# ---- swapping through io_uring (or whatever the kernel allows), no fault ------------------------
run "$STRATA" train "${JOB[@]}" --set train.steps=$N --set train.run_dir=swap_auto
expect_exit 0 "swap run"
expect_stderr_matches "^activations: swap to nvme file $SWAP/strata_swap_[0-9]+_r0\\.bin"
expect_stderr_matches "^swap tier nvme: direct I/O through (io_uring|threads) on $SWAP/" "swap run"
same_losses swap_auto "swap run"
expect_no_swap_file "$SWAP" "swap run"

# ---- io_uring disabled -------------------------------------------------------------------------
STRATA_IO_BACKEND=threads run "$STRATA" train "${JOB[@]}" --set train.steps=$N \
  --set train.run_dir=swap_threads
expect_exit 0 "STRATA_IO_BACKEND=threads"
expect_stderr_contains "STRATA_IO_BACKEND=threads: using the pread/pwrite thread-pool I/O backend" \
  "STRATA_IO_BACKEND=threads"
expect_stderr_contains "swap tier nvme: direct I/O through threads on $SWAP/" "STRATA_IO_BACKEND=threads"
same_losses swap_threads "STRATA_IO_BACKEND=threads"
expect_no_swap_file "$SWAP" "STRATA_IO_BACKEND=threads"

# As a container's seccomp policy does: io_uring_setup fails with EPERM (libseccomp through
# ctypes, then exec). The automatic backend must fall back and say so.
cat >noring.py <<'EOF'
import ctypes, ctypes.util, errno, os, sys
try:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
except OSError as e:
    print(f"libseccomp not available: {e}", file=sys.stderr)
    sys.exit(77)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
ctx = lib.seccomp_init(0x7FFF0000)  # SCMP_ACT_ALLOW
ok = bool(ctx)
for name in (b"io_uring_setup", b"io_uring_enter", b"io_uring_register"):
    nr = lib.seccomp_syscall_resolve_name(name)
    ok = ok and nr >= 0 and lib.seccomp_rule_add(ctx, 0x00050000 | errno.EPERM, nr, 0) == 0
if not ok or lib.seccomp_load(ctx) != 0:
    print("cannot install a seccomp filter here", file=sys.stderr)
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
EOF
run python3 noring.py "$STRATA" train "${JOB[@]}" --set train.steps=$N --set train.run_dir=swap_noring
if [[ $E2E_RC -eq 77 ]]; then
  echo "note: io_uring refused by seccomp: skipped ($(last_stderr | tail -n 1))" >&2
else
  expect_exit 0 "io_uring refused by seccomp"
  expect_stderr_contains "io_uring unavailable (io_uring_queue_init: $(python3 -c \
    'import os; print(os.strerror(1))') (errno 1)" "io_uring refused by seccomp"
  expect_stderr_contains "using the pread/pwrite thread-pool backend" "io_uring refused by seccomp"
  expect_stderr_contains "swap tier nvme: direct I/O through threads on $SWAP/" \
    "io_uring refused by seccomp"
  same_losses swap_noring "io_uring refused by seccomp"
  expect_no_swap_file "$SWAP" "io_uring refused by seccomp"
fi

# ---- the swap file deleted under the run: the descriptor keeps it; nothing changes --------------
start_bg del --set train.steps=$N --set train.run_dir=swap_deleted
acted=$(python3 fault.py "$BG_PID" "$SWAP/strata_swap_${BG_PID}_r0.bin" delete)
finish_bg del "swap file deleted under the run"
[[ $acted -eq 1 ]] || fail "the swap file of the run was never seen holding data (deleted $acted times)"
expect_exit 0 "swap file deleted under the run"
same_losses swap_deleted "swap file deleted under the run"
expect_no_swap_file "$SWAP" "swap file deleted under the run"

# ---- the swap file truncated under the run --------------------------------------------------------
# Once, right after the first write: the following writes re-extend the file, so the first
# block's data now reads back as zeros from a hole, without any short read. Then repeatedly.
for mode in truncate repeat; do
  start_bg "$mode" --set train.steps=$N --set train.run_dir="swap_$mode"
  file="$SWAP/strata_swap_${BG_PID}_r0.bin"
  acted=$(python3 fault.py "$BG_PID" "$file" "$mode")
  finish_bg "$mode" "swap file truncated under the run ($mode)"
  [[ $acted -ge 1 ]] || fail "$mode: the swap file was never seen holding data"
  if [[ $E2E_RC -eq 0 ]]; then  # the only acceptable success: nothing lost
    same_losses "swap_$mode" "swap file truncated ($mode, exit 0)"
  else
    expect_swap_error "$file" 'offset [0-9]+.*(truncated|differ)' "swap file truncated ($mode)"
    PARTIAL=1 same_losses "swap_$mode" "swap file truncated ($mode), steps before the error"
  fi
  expect_no_swap_file "$SWAP" "swap file truncated ($mode)"
  echo "swap file truncated ($mode, $acted times): exit $E2E_RC" \
    "$(grep -E '^strata: error: ' "$E2E_OUT/stderr" | tail -n 1)" >&2
done

# ---- another error mid-run: the swap file is removed --------------------------------------------
# (A checkpoint directory that cannot be made is now refused before step 1; a learning rate that
# blows the gradient norm up is an error only a running step meets.)
run "$STRATA" train "${JOB[@]}" --set train.steps=20 --set checkpoint.resume=never \
  --set train.run_dir=err_run --set optim.lr=1000 --set optim.grad_clip=0 --set optim.warmup_steps=0
expect_exit 1 "a non-finite gradient norm mid-run"
expect_stderr_matches "strata: error: step [0-9]+: the (global gradient norm|loss) is not finite"
expect_stderr_contains "step 2/20 | loss"
expect_no_swap_file "$SWAP" "error exit mid-run"

# ---- SIGTERM: checkpoint, exit 143, no swap file --------------------------------------------------
start_bg term --set train.steps=100000 --set train.run_dir=swap_term
wait_for_step term 2
expect_file "$SWAP/strata_swap_${BG_PID}_r0.bin"
kill -TERM "$BG_PID"
finish_bg term "SIGTERM during a swap run"
expect_exit 143 "SIGTERM during a swap run"
expect_stderr_matches '^stopped by signal 15 after step [0-9]+ \(checkpoint saved\)$'
expect_no_swap_file "$SWAP" "SIGTERM"

# ---- SIGHUP (the session went away): the same as SIGTERM, exit 129 ---------------------------------
# Skipped when this shell inherited SIGHUP ignored (nohup): strata then ignores it too, by design.
if (( (0x$(awk '/^SigIgn:/ {print $2}' /proc/$$/status) & 1) == 0 )); then
  start_bg hup --set train.steps=100000 --set train.run_dir=swap_hup
  wait_for_step hup 2
  expect_file "$SWAP/strata_swap_${BG_PID}_r0.bin"
  kill -HUP "$BG_PID"
  finish_bg hup "SIGHUP during a swap run"
  expect_exit 129 "SIGHUP during a swap run"
  expect_stderr_matches '^stopped by signal 1 after step [0-9]+ \(checkpoint saved\)$'
  expect_no_swap_file "$SWAP" "SIGHUP"
else
  echo "note: SIGHUP is ignored here (nohup?); the SIGHUP case is skipped"
fi

# ---- SIGKILL: the file stays; the next run in the directory removes it ---------------------------
start_bg kill --set train.steps=100000 --set train.run_dir=swap_kill
wait_for_step kill 2
killed=$BG_PID
{ kill -KILL "$killed"; finish_bg kill "SIGKILL during a swap run"; } 2>/dev/null  # no "Killed"
expect_exit 137 "SIGKILL during a swap run"
expect_file "$SWAP/strata_swap_${killed}_r0.bin"
run "$STRATA" train "${JOB[@]}" --set train.steps=1 --set train.run_dir=after_kill
expect_exit 0 "the run after a SIGKILLed one"
expect_stderr_contains "removed stale swap file $SWAP/strata_swap_${killed}_r0.bin (process $killed is gone)"
expect_no_swap_file "$SWAP" "the run after a SIGKILLed one"

# ---- file system full: a 1 MiB tmpfs --------------------------------------------------------------
# Two steps with checkpoints on the real disk, then the same run continued with its swap on the
# full file system: it fails naming tier and file, its checkpoints are untouched, and continuing
# again on the disk gives the losses of an uninterrupted run.
full_reason=""
if [[ $(id -u) -ne 0 ]]; then
  full_reason="needs root to mount a tmpfs"
else
  FULL_MNT=$E2E_ROOT/full
  mkdir -p "$FULL_MNT"
  if ! mount -t tmpfs -o size=1m strata_e2e_full "$FULL_MNT" 2>mount.err; then
    full_reason="mount -t tmpfs failed: $(cat mount.err)"
    FULL_MNT=""
  elif ! python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_CREAT | os.O_RDWR | os.O_DIRECT)); os.unlink(sys.argv[1])' \
    "$FULL_MNT/probe" 2>/dev/null; then
    full_reason="tmpfs here does not support O_DIRECT"
  fi
fi
if [[ -n "$full_reason" ]]; then
  echo "note: file system full (ENOSPC): skipped ($full_reason)" >&2
else
  run "$STRATA" train "${JOB[@]}" --set train.steps=2 --set checkpoint.every=1 \
    --set train.run_dir=enospc
  expect_exit 0 "the first two steps (swap on disk)"
  # The run directory as the failing run must leave it: its checkpoints and metrics (config.yaml
  # is rewritten at every start).
  run_state() { (cd enospc && find checkpoints metrics.jsonl -printf '%p %s %T@\n' | LC_ALL=C sort); }
  before=$(run_state)
  run "$STRATA" train "${JOB[@]}" --set train.steps=$N --set checkpoint.every=1 \
    --set train.run_dir=enospc --set offload.dir="$FULL_MNT/swap"
  expect_stderr_contains "resumed from enospc/checkpoints/step_00000002 at step 2"
  expect_swap_error "$FULL_MNT/swap/strata_swap_" "$(python3 -c 'import os; print(os.strerror(28))')" \
    "swap on a full file system"
  expect_no_swap_file "$FULL_MNT/swap" "swap on a full file system"
  [[ "$before" == "$(run_state)" ]] ||
    fail "the run that failed on a full file system changed its run directory"
  run "$STRATA" train "${JOB[@]}" --set train.steps=$N --set checkpoint.every=1 \
    --set train.run_dir=enospc
  expect_exit 0 "continuing on the disk after ENOSPC"
  expect_stderr_contains "resumed from enospc/checkpoints/step_00000002 at step 2"
  same_losses enospc "continuing on the disk after ENOSPC"
  expect_no_swap_file "$SWAP" "continuing on the disk after ENOSPC"
fi
expect_no_swap_file "$SWAP" "the end of the test"
