#!/usr/bin/env bash
# Set-up, a Release build, then the MNIST MLP (784-128-64-10, Adam, batch 200) with good defaults.
# Extra arguments go to mnist_mlp (try --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
BUILD_TYPE=Release "$here/scripts/build.sh"
# The programs look for MNIST in $TAPEGRAD_MNIST_DIR, else in ./data/mnist.
export TAPEGRAD_MNIST_DIR="${TAPEGRAD_MNIST_DIR:-$here/data/mnist}"
exec "${BUILD_DIR:-$here/build}/examples/mnist_mlp" --hidden 128,64 --optimizer adam --lr 1e-3 --batch-size 200 \
  --epochs 15 "$@"
