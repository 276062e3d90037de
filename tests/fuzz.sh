#!/usr/bin/env bash
# libFuzzer on the parsers of untrusted files (tests/fuzz/fuzz_*.cpp), under ASan + UBSan with
# leak checks. Builds the clang fuzz build (build-fuzz, -DSTRATA_FUZZ=ON) when needed, runs each
# target on a fresh copy of its seed corpus and fails on any crash, sanitizer report, leak,
# timeout or out-of-memory. Prints executions, exec/s and peak RSS per target.
#   bash tests/fuzz.sh                       # every target, 60 s each
#   bash tests/fuzz.sh --seconds 10          # the CI short run (ctest fuzz_short)
#   bash tests/fuzz.sh --runs 10000000 fuzz_token_header
# Exit 77 (ctest: skipped) when clang's libFuzzer is missing: launch/setup.sh --tests installs it.
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_ARGS (extra libFuzzer flags).
# A finding leaves its input in $FUZZ_BUILD_DIR/fuzz-work/<target>/ (crash-*, leak-*, ...);
# replay it with: $FUZZ_BUILD_DIR/tests/fuzz/<target> <file>. Seeds: tests/fuzz/corpus/<target>/
# (and configs/*.yaml for the job file); dictionaries: tests/fuzz/<target>.dict.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
runs=""
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1'" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

build=${FUZZ_BUILD_DIR:-build-fuzz}
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
if ! command -v clang++ >/dev/null ||
   ! echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
     clang++ -x c++ - -fsanitize=fuzzer,address,undefined -o "$probe_dir/probe" 2>/dev/null; then
  echo "fuzz.sh: SKIPPED: clang++ with libFuzzer not found (apt-get install clang libclang-rt-dev)"
  exit 77
fi

if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
fi
cmake --build "$build" -j "$(nproc)" >/dev/null

if [[ ${#targets[@]} -eq 0 ]]; then
  for src in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# Largest input per target: a little over the largest real file of its kind in the seeds.
max_len() {
  case "$1" in
    fuzz_job_config | fuzz_token_header) echo 4096 ;;
    *) echo 16384 ;;
  esac
}

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
printf '%-26s %12s %10s %9s  %s\n' target executions exec/s peak_rss result
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  [[ -x "$bin" ]] || { echo "fuzz.sh: no target $t (expected $bin)" >&2; exit 2; }
  work="$build/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
  [[ "$t" == fuzz_job_config ]] && cp configs/*.yaml "$work/corpus/"  # the real job files
  dict=()
  [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")  # keys, values, syntax
  limit=(-max_total_time="$seconds")
  [[ -n "$runs" ]] && limit=(-runs="$runs")
  # timeout: a wedged run (say, a sanitizer report that itself hangs) still ends the script.
  wall=$((seconds + 120))
  [[ -n "$runs" ]] && wall=86400
  start=$SECONDS
  rc=0
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  timeout -k 10 "$wall" "$bin" "${limit[@]}" -max_len="$(max_len "$t")" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/" "${dict[@]}" ${FUZZ_ARGS:-} "$work/corpus" >"$work/log" 2>&1 || rc=$?
  elapsed=$(( SECONDS - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$work/log" | tail -1)
  result=ok
  if [[ $rc -ne 0 ]] || grep -qE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error:|FUZZ FINDING' "$work/log"; then
    result="FAILED (exit $rc; log $work/log)"
    failed=1
  fi
  printf '%-26s %12s %10s %8sM  %s (%d s)\n' "$t" "${execs:-?}" "${rate:-?}" "${rss:-?}" \
    "$result" "$elapsed"
  if [[ "$result" != ok ]]; then
    grep -E -A30 'ERROR:|runtime error:|FUZZ FINDING' "$work/log" | head -60 >&2 || tail -30 "$work/log" >&2
  fi
done
exit $failed
