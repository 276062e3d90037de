#!/usr/bin/env bash
# What a run leaves for its observers, checked by readers written from the formats' specs
# (tests/e2e/observe_check.py), not by Strata's writers:
#   - the step line's elapsed time and ETA, progress lines of evaluations and checkpoint saves;
#   - TensorBoard event files (log.tensorboard_dir): TFRecord framing with masked CRC-32C, Event
#     protos whose scalars equal metrics.jsonl;
#   - trace-event JSON per rank (log.trace_steps) under mpirun -np 2 with ZeRO-2 and NVMe swap:
#     well-formed, begin/end matched, complete events nested per lane, and compute per block and
#     pass, collectives, swap I/O and the optimizer step all present;
#   - the new keys' bad values: exit 2 naming the key, a monitor port in use too.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
e2e_init "$@"
CHECK="$SRC_DIR/tests/e2e/observe_check.py"

prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val --set train.steps=6
      --set train.eval_every=3 --set train.threads=1 --set log.progress_s=0)

# ---- progress and TensorBoard, one process ---------------------------------------------------
run "$STRATA" train "${SETS[@]}" --set train.run_dir=one --set log.tensorboard_dir=one/tb
expect_exit 0 "one process with TensorBoard"
expect_stderr_matches '^step 1/6 \| loss .* \| elapsed [0-9.]+(ms|s) \| eta [0-9.]+(ms|s)$' "step line"
expect_stderr_matches '^step 6/6 \| .* \| eta 0ms$' "the last step's ETA"
expect_stderr_matches '^evaluation: 4/8 batches \(50%\), [0-9.]+(ms|s), eta ' "evaluation progress"
expect_stderr_contains "checkpoint of step 6: 1/3 phases (33%)" "checkpoint progress"
expect_stderr_contains "checkpoint of step 6: 3/3 phases (100%)" "checkpoint progress"
tb=(one/tb/events.out.tfevents.*)
[[ ${#tb[@]} -eq 1 && -f ${tb[0]} ]] || fail "expected one event file in one/tb, got ${tb[*]}"
python3 "$CHECK" tfevents "${tb[0]}" > scalars.json || fail "the event file does not decode"
python3 - scalars.json one/metrics.jsonl <<'PY' || fail "TensorBoard scalars differ from metrics.jsonl"
import json, struct, sys
tb = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
f32 = lambda v: struct.unpack("<f", struct.pack("<f", v))[0]
assert [int(s) for s in sorted(tb["train/loss"], key=int)] == list(range(1, 7)), tb["train/loss"]
for r in rows:
    s = str(r["step"])
    assert tb["train/loss"][s] == f32(r["loss"]), (s, tb["train/loss"][s], r["loss"])
    assert tb["train/lr"][s] == f32(r["lr"]), s
    assert abs(tb["train/grad_norm"][s] - r["grad_norm"]) <= 1e-5 * r["grad_norm"], s
    assert tb["perf/tokens_per_s"][s] > 0 and tb["memory/peak_total_mib"][s] > 0, s
    assert "elapsed_s" in r and "eta_s" in r, r
    if "val_loss" in r:
        assert tb["val/loss"][s] == f32(r["val_loss"]), s
assert sorted(tb["val/loss"], key=int) == ["3", "6"], tb["val/loss"]
assert rows[-1]["eta_s"] == 0, rows[-1]
PY

# ---- traces, two ranks: ZeRO-2 (nonblocking reductions) and NVMe swap -------------------------
require_mpirun
run "${MPIRUN[@]}" -np 2 "$STRATA" train "${SETS[@]}" --set parallel.dp=2 --set train.micro_batch=1 \
  --set parallel.zero_stage=2 --set offload.policy=swap --set offload.tier=nvme \
  --set offload.dir="$PWD/swap" --set offload.keep_last=0 --set log.trace_steps=[2,4] \
  --set train.run_dir=two
expect_exit 0 "mpirun -np 2 with traces"
expect_stderr_contains "trace: steps written to two/trace_r00000.json"
for r in 0 1; do
  f=two/trace_r0000$r.json
  expect_file "$f"
  python3 "$CHECK" trace "$f" "$r" > summary$r.json || fail "rank $r's trace is malformed"
  python3 - summary$r.json <<'PY' || fail "rank $r's trace lacks a kind of span"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["begin_end_pairs"] == 2, s["begin_end_pairs"]  # the two traced steps
for cat in ("compute", "communication", "optimizer", "swap I/O"):
    assert s["cats"].get(cat, 0) > 0, (cat, s["cats"])
names = set(s["names"])
for n in ("embedding forward", "block 0 forward", "block 1 backward", "optimizer step"):
    assert n in names, (n, sorted(names)[:20])
assert any(n.startswith("reduce_scatter dp #") or n.startswith("ireduce_scatter dp #")
           for n in names), sorted(names)
assert any(n.startswith("all_gather dp #") or n.startswith("iall_gather dp #") for n in names)
assert {"write", "read"} <= names, "swap writes and reads"
PY
done

# ---- bad values of the new keys: exit 2 naming the key, before any work -----------------------
for bad in "monitor.port=99999|monitor.port" "monitor.bind=localhost|monitor.bind" \
           "log.trace_steps=[7]|log.trace_steps" "log.progress_s=-3|log.progress_s"; do
  run "$STRATA" train "${SETS[@]}" --set train.run_dir=bad --set "${bad%|*}"
  expect_exit 2 "${bad%|*}"
  expect_stderr_contains "${bad#*|}" "${bad%|*} names the key"
done
expect_absent bad
touch afile
run "$STRATA" train "${SETS[@]}" --set train.run_dir=bad --set log.tensorboard_dir=afile
expect_exit 2 "a file as log.tensorboard_dir"
expect_stderr_contains "log.tensorboard_dir: cannot use 'afile' as a directory"
# A monitor port another process listens on.
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' > port.txt &
holder=$!
for _ in $(seq 50); do [[ -s port.txt ]] && break; sleep 0.1; done
port=$(cat port.txt)
run "$STRATA" train "${SETS[@]}" --set train.run_dir=busy --set monitor.port="$port"
kill "$holder"
expect_exit 2 "a monitor port in use"
expect_stderr_contains "monitor.port: monitor: cannot listen on 127.0.0.1:$port"
