#!/usr/bin/env bash
# Strata against a peer on the same machine in the same run: the ~34M-parameter LLLS model,
# 4 x 512 tokens, full training steps (forward, backward, clip, AdamW) in Strata
# (build/bench/step_bench) and in PyTorch (bench/torch_peer.py, Debian's python3-torch, CPU fp32,
# chunked linear attention), one after the other, same thread count.
#   bash bench/compare_peer.sh [BUILD_DIR]
# PyTorch uses the system BLAS: install libopenblas0-openmp (Debian) for a fair peer; with the
# reference BLAS it is ~40x slower and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
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
