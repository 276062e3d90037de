#!/usr/bin/env bash
# Installs the Debian packages Strata needs (only those missing), then configures and builds.
#   bash launch/setup.sh           # build for training
#   bash launch/setup.sh --tests   # also what the test suite needs (PyTorch reference, python3)
# Environment: BUILD_DIR (default build), CMAKE_BUILD_TYPE (default Release), STRATA_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) want_tests=1 ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --tests)" >&2; exit 2 ;;
  esac
done

packages=(build-essential cmake ninja-build pkg-config
          libopenmpi-dev openmpi-bin liburing-dev libyaml-cpp-dev libdnnl-dev
          libnuma-dev numactl libboost-dev libgtest-dev
          libsentencepiece-dev  # prepare-data --tokenizer spm:FILE / --train-tokenizer
          fortunes)  # fortunes: the English text corpus of configs/tiny.yaml
if [ "$want_tests" = 1 ]; then
  packages+=(python3 python3-torch libopenblas0-openmp)  # PyTorch: the independent reference
  # (OpenBLAS: with the reference BLAS its checks take minutes, not seconds)
  packages+=(sentencepiece)  # spm_encode: tests/e2e/tokenizers.sh checks prepare-data's ids by it
  packages+=(slurm-wlm munge)  # tests/e2e/slurm_train.sh: a private single-node Slurm on localhost
  packages+=(clang libclang-rt-dev llvm)  # tests/fuzz.sh: libFuzzer, llvm-symbolizer for reports
  packages+=(prometheus chromium)  # tests/e2e/monitor.sh: promtool check metrics, headless page
  packages+=(openssh-server iproute2)  # tests/e2e/two_nodes.sh: an sshd per network namespace
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build_dir="${BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
  -DSTRATA_SANITIZE="${STRATA_SANITIZE:-OFF}" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/strata"
