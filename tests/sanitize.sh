#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer, leak checks on.
#   bash tests/sanitize.sh            # builds build-asan (RelWithDebInfo, -fsanitize=address,undefined)
# Open MPI's own start-up allocations are suppressed (tests/lsan.supp); its MCA components stay
# loaded so those frames can be named, and full unwinding lets the suppressions match.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$(nproc)"
export OMPI_MCA_mca_base_component_disable_dlclose=1
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The PyTorch reference test runs an uninstrumented Python beside strata: left to the normal suite.
ctest --test-dir build-asan --output-on-failure -j2 -E torch_reference
