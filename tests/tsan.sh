#!/usr/bin/env bash
# The threaded parts of offload under ThreadSanitizer: the I/O engine's driver thread and its
# completion callbacks, the tiers' copier thread, and the fault paths.
#   bash tests/tsan.sh            # builds build-tsan (RelWithDebInfo, -fsanitize=thread)
# Only these tests: the rest of the suite runs OpenMP kernels, and libgomp is not instrumented
# (its barriers would be reported as races).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_CUDA=OFF \
  -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
tests=(test_io_engine test_activation_swap test_swap_faults)
cmake --build build-tsan -j "$(nproc)" --target "${tests[@]}"
export TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1
for t in "${tests[@]}"; do ./build-tsan/tests/"$t"; done
