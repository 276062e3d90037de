#!/usr/bin/env bash
# Strata against a peer on the same machine in the same run: the ~34M-parameter LLLS model,
# 4 x 512 tokens, full training steps (forward, backward, clip, AdamW) in Strata
# (build/bench/step_bench) and in PyTorch (bench/torch_peer.py, Debian's python3-torch, CPU fp32,
# chunked linear attention), one after the other, same thread count.
#   bash bench/compare_peer.sh [BUILD_DIR] [--bf16]
# --bf16: Strata with --precision bf16 against PyTorch with bf16 autocast (and both fp32 runs).
# PyTorch uses the system BLAS: install libopenblas0-openmp (Debian) for a fair peer; with the
# reference BLAS it is ~40x slower and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bf16=0
[ "${2:-}" = "--bf16" ] && bf16=1
threads=${OMP_NUM_THREADS:-$(nproc)}
echo "== strata (build/bench/step_bench, $threads threads)"
OMP_NUM_THREADS=$threads "$build/bench/step_bench" --steps 3 | tee /tmp/strata_compare_strata.txt
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  echo "== pytorch: not installed (apt-get install python3-torch libopenblas0-openmp): skipped"
  exit 0
fi
echo "== pytorch peer (bench/torch_peer.py --bench, $threads threads)"
OMP_NUM_THREADS=$threads /usr/bin/python3 bench/torch_peer.py --bench | tee /tmp/strata_compare_torch.txt
s=$(sed -n 's/.*| \([0-9.]*\) tokens\/s.*/\1/p' /tmp/strata_compare_strata.txt)
t=$(sed -n 's/^torch_peer tokens_per_s \([0-9.]*\).*/\1/p' /tmp/strata_compare_torch.txt)
[ -n "$s" ] && [ -n "$t" ] && python3 -c "print(f'strata {float(\"$s\"):.0f} tok/s vs pytorch {float(\"$t\"):.0f} tok/s: {float(\"$s\")/float(\"$t\"):.2f}x')"
if [ "$bf16" = 1 ]; then
  echo "== strata bf16 (step_bench --precision bf16)"
  OMP_NUM_THREADS=$threads "$build/bench/step_bench" --steps 3 --precision bf16 | tee /tmp/strata_compare_strata_bf16.txt
  echo "== pytorch peer bf16 autocast (torch_peer.py --bench --bf16)"
  OMP_NUM_THREADS=$threads /usr/bin/python3 bench/torch_peer.py --bench --bf16 | tee /tmp/strata_compare_torch_bf16.txt
  sb=$(sed -n 's/.*| \([0-9.]*\) tokens\/s.*/\1/p' /tmp/strata_compare_strata_bf16.txt)
  tb=$(sed -n 's/^torch_peer tokens_per_s \([0-9.]*\).*/\1/p' /tmp/strata_compare_torch_bf16.txt)
  python3 -c "s,t,sb,tb=map(float,('$s','$t','$sb','$tb')); print(f'strata bf16 {sb:.0f} tok/s: {sb/s:.2f}x strata fp32, {sb/tb:.2f}x pytorch bf16 ({tb:.0f}), {sb/t:.2f}x pytorch fp32 ({t:.0f})')"
fi
