#!/usr/bin/env bash
# The threaded parts under ThreadSanitizer: the I/O engine's driver thread and its completion
# callbacks, the tiers' copier thread, the fault paths, and the run monitor's server thread.
#   bash tests/tsan.sh            # builds build-tsan (RelWithDebInfo, -fsanitize=thread)
#   TSAN_BUILD_DIR=dir bash tests/tsan.sh   # another build directory
# Only these tests: the rest of the suite runs OpenMP kernels, and libgomp is not instrumented
# (its barriers would be reported as races).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${TSAN_BUILD_DIR:-build-tsan}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_CUDA=OFF \
  -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
tests=(test_io_engine test_activation_swap test_swap_faults test_monitor_http)
cmake --build "$build" -j "$(nproc)" --target "${tests[@]}"
export TSAN_OPTIONS=halt_on_error=1 OMP_NUM_THREADS=1
for t in "${tests[@]}"; do "./$build/tests/$t"; done
