#!/usr/bin/env bash
# The instruments' pictures, each from one command. The programs come from ${BUILD_DIR:-build}, MNIST from
# $TAPEGRAD_MNIST_DIR (else data/mnist); each figure goes to ${OUT:-figures}/<name>/.
#   scripts/figures.sh landscape   loss_landscape: initial -> final, a filter-normalised slice, the training path on
#                                  its PCA plane, and three optimisers' paths from one start on one plane (paths.png,
#                                  paths-surface.png)
#   scripts/figures.sh spectrum    the Hessian's and the Gauss-Newton matrix's spectral densities at the trained weights
#                                  (SLQ), with their top eigenvalues and traces (loss_landscape --spectrum)
#   scripts/figures.sh paths       optimisers on the 2-D test functions: Rosenbrock, Beale, the saddle
#   scripts/figures.sh curvature   sharpness, trace and the gradient noise scale B_simple of the 784-128-64-10 MLP
#                                  across 3 epochs of Adam (the lab's --track), with each tracker's overhead
#   scripts/figures.sh eos         edge of stability: ReLU + cross-entropy and tanh + MSE (scripts/eos.sh)
#   scripts/figures.sh all         every one of them
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
out="${OUT:-figures}"
export TAPEGRAD_MNIST_DIR="${TAPEGRAD_MNIST_DIR:-$here/data/mnist}"

landscape() { "$build/examples/loss_landscape" --out "$out/landscape"; }
spectrum() { "$build/examples/loss_landscape" --spectrum --curvature both --out "$out/spectrum"; }
paths() {
  for function in rosenbrock beale saddle; do
    "$build/examples/optimizer_paths" --function "$function" --out "$out/paths-$function"
  done
}

curvature() {
  local dir="$out/curvature"
  mkdir -p "$dir"
  # The lab's registered mlp is an nn::Sequential, which per-sample gradients (noise-scale) need.
  "$build/examples/compare_optimizers" --model mlp --optimizers 'adam(lr=1e-3)' --batch-sizes 200 --seeds 0 \
    --epochs 3 --track 'sharpness(every=50)' 'trace(every=50)' 'noise-scale(every=50)' --out "$dir" --no-plots \
    --quiet | tee "$dir/run.txt" | grep -E 'run 1: '
  # The columns: step,epoch,loss,sharpness,trace,trace_se,noise_scale,grad_sq,trace_cov.
  awk -F, 'NR > 1 && $4 != "" { print $1, $4, $5, $7 }' "$dir/track-run1.csv" > "$dir/curvature.dat"
  cat > "$dir/curvature.gp" <<'EOF'
set terminal pngcairo size 900,900 noenhanced font 'Sans,11'
set output 'curvature.png'
set multiplot layout 3,1 title '784-128-64-10 MLP, Adam (lr 1e-3, batch 200), on the first 1,000 training images'
set grid; set key off; set xlabel 'step'
set ylabel 'sharpness (top eigenvalue)'; plot 'curvature.dat' using 1:2 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#1f77b4'
set ylabel 'trace of the Hessian'; plot 'curvature.dat' using 1:3 with linespoints pt 7 ps 0.5 lw 2 lc rgb '#d62728'
set ylabel 'B_simple'; set logscale y; plot 'curvature.dat' using 1:($4 > 0 ? $4 : 1/0) with linespoints pt 7 ps 0.5 lw 2 lc rgb '#2ca02c'
unset multiplot
EOF
  (cd "$dir" && gnuplot curvature.gp)
  echo "wrote $dir/curvature.png"
}

eos() {
  OUT="$out/eos-relu-ce" "$here/scripts/eos.sh" 400 0.1 0.2 0.4
  ACTIVATION=tanh LOSS=mse OUT="$out/eos-tanh-mse" "$here/scripts/eos.sh" 300 0.05 0.1 0.2
}

case "${1:-}" in
  landscape | spectrum | paths | curvature | eos) "$1" ;;
  all) landscape && spectrum && paths && curvature && eos ;;
  *)
    echo "usage: scripts/figures.sh landscape|spectrum|paths|curvature|eos|all" >&2
    exit 2
    ;;
esac
