#!/usr/bin/env bash
# The run monitor (monitor.port) as its users see it, with Debian's own tools:
#   - under a flood of slowloris and surplus connections the single-process run keeps training
#     (its steps advance meanwhile) and the monitor answers again afterwards;
#   - mpirun -np 2 (dp=2) with rank 1 stalled in step 3 (STRATA_FAULT): /status shows rank 1
#     stalled and rank 0 waiting in its all-reduce, checked as JSON; /metrics passes
#     `promtool check metrics`; the dashboard rendered by headless Chromium (--dump-dom) shows
#     both ranks' states, the loss curve and the memory table; unknown paths, huge heads,
#     garbage, other methods, slowloris and a connection flood get their answers and never
#     crash it; the stall ends and the job finishes every step.
set -euo pipefail
source "$(dirname "$0")/lib.bash"
e2e_init "$@"
PROBE="$SRC_DIR/tests/e2e/monitor_probe.py"
CHECK="$SRC_DIR/tests/e2e/observe_check.py"
command -v promtool >/dev/null || { echo "promtool (Debian package prometheus) not found: skipped"; exit 77; }
command -v chromium >/dev/null || { echo "chromium not found: skipped"; exit 77; }
require_mpirun

prepare_corpus .
SETS=("${TINY_SETS[@]}" --set data.train=data/train --set data.val=data/val --set train.threads=1
      --set train.eval_every=0)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- training never waits for the monitor's clients ---------------------------------------------
PORT=$(free_port)
"$STRATA" train "${SETS[@]}" --set train.steps=3000 --set log.every=1000 --set train.run_dir=flood \
  --set monitor.port="$PORT" >flood.out 2>flood.err &
pid=$!
python3 "$PROBE" wait "$PORT" 's["step"] >= 1' 60 >/dev/null || fail "the monitor of the flooded run never answered"
read -r first last < <(python3 "$PROBE" flood "$PORT" 2)
[[ $last -gt $first ]] || fail "training did not advance during the flood (step $first -> $last)"
wait "$pid" || fail "the flooded run failed: $(tail -5 flood.err)"
grep -qF "step 3000/3000" flood.err || fail "the flooded run did not finish"

# ---- two ranks, rank 1 stalled -------------------------------------------------------------------
PORT=$(free_port)
STRATA_FAULT="stall:rank=1,step=3,seconds=30" "${MPIRUN[@]}" -x STRATA_FAULT -np 2 "$STRATA" train \
  "${SETS[@]}" --set parallel.dp=2 --set train.micro_batch=1 --set train.steps=5 \
  --set train.run_dir=stall --set monitor.port="$PORT" >stall.out 2>stall.err &
pid=$!
python3 "$PROBE" wait "$PORT" \
  's["ranks"][1]["state"] == "stalled" and s["ranks"][0]["state"] == "waiting"' 25 > status.json ||
  fail "rank 1 never showed as stalled: $(tail -5 stall.err)"
python3 "$CHECK" status status.json 2 >/dev/null || fail "/status is not what it should be"
python3 - status.json <<'PY' || fail "/status figures"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["step"] == 2 and s["total_steps"] == 5, (s["step"], s["total_steps"])
assert s["layout"] == {"dp": 2, "sp": 1, "pp": 1}, s["layout"]
assert s["history"]["step"] == [1, 2] and all(l > 0 for l in s["history"]["loss"]), s["history"]
r0, r1 = s["ranks"]
assert r0["activity"].startswith("waiting in all_reduce world #"), r0["activity"]
assert r0["heartbeat_age_s"] < 2, r0  # the waiting rank keeps reporting
assert r1["heartbeat_age_s"] >= s["stall_after_s"] >= 5, r1
assert r0["memory"]["params"] > 0 and r1["memory"]["params"] > 0
assert r0["comm_bytes"]["dp"] > 0, r0["comm_bytes"]
assert s["eta_s"] is not None and s["elapsed_s"] > 0
PY
python3 "$PROBE" get "$PORT" /metrics > metrics.txt || fail "GET /metrics"
promtool check metrics < metrics.txt > promtool.out 2>&1 || fail "promtool rejects /metrics: $(cat promtool.out)"
for want in 'strata_rank_stalled{rank="1"} 1' 'strata_rank_stalled{rank="0"} 0' 'strata_step 2' \
            'strata_memory_bytes{rank="1",category="params"} ' 'strata_comm_bytes_total{rank="0",axis="dp"} ' \
            'strata_heartbeat_age_seconds{rank="1"} ' 'strata_tokens_per_second ' 'strata_gemm_flops_per_second{rank="1"} '; do
  grep -qF -- "$want" metrics.txt || fail "/metrics lacks '$want'"
done
timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$PWD/chrome" \
  --dump-dom "http://127.0.0.1:$PORT/" > dom.html 2>chrome.err || fail "chromium: $(tail -3 chrome.err)"
python3 - dom.html <<'PY' || fail "the rendered dashboard"
import re, sys
dom = open(sys.argv[1]).read()
assert 'data-rendered="step-2"' in dom, "the page script did not render"
assert re.search(r'<tr class="rank state-waiting" data-rank="0"><td>0</td><td>waiting</td>', dom), dom[-3000:]
assert re.search(r'<tr class="rank state-stalled" data-rank="1"><td>1</td><td>stalled</td>', dom)
pts = re.search(r'<polyline id="loss-line" points="([^"]*)"', dom).group(1).split()
assert len(pts) == 2, pts  # steps 1 and 2
assert re.search(r'<polyline id="tps-line" points="[0-9.]+,[0-9.]+ [0-9.]+,[0-9.]+"', dom)
assert 'data-category="params"' in dom and 'data-category="activations"' in dom
assert "step 2/5" in dom and "2 ranks (dp 2, sp 1, pp 1)" in dom
PY
python3 "$PROBE" abuse "$PORT" || fail "bad requests"
# The stall ends; the job trains the rest and exits cleanly, the monitor having survived it all.
wait "$pid" || fail "the stalled job failed: $(tail -5 stall.err)"
grep -qF "step 5/5" stall.err || fail "the job did not finish"
