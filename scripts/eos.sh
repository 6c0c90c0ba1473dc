#!/usr/bin/env bash
# Edge of stability in miniature (Cohen et al. 2021, Figure 1): full-batch gradient descent on 5,000 MNIST
# images (the 784-128-64-10 MLP) at several step sizes, the sharpness λ_max of the training loss tracked
# every 20 steps on all 5,000 images; λ_max rises until it reaches 2/η, then hovers there. Writes
# eos-out/eos.png (and the lab's files).
# usage: [ACTIVATION=relu|tanh] [LOSS=cross-entropy|mse] [OUT=eos-out] [BUILD_DIR=build] scripts/eos.sh [STEPS] [RATES...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
activation="${ACTIVATION:-relu}"
loss="${LOSS:-cross-entropy}"
steps="${1:-400}"
shift || true
rates=("${@:-0.1 0.2 0.4}")
read -r -a rates <<< "${rates[*]}"
out="${OUT:-eos-out}"
specs=()
for rate in "${rates[@]}"; do specs+=("sgd(lr=$rate)"); done
"$build/examples/compare_optimizers" --model "mlp(activation=$activation)" --loss "$loss" --optimizers "${specs[@]}" \
  --seeds 0 --batch-sizes 5000 --train-subset 5000 --epochs "$steps" --track 'sharpness(every=20,samples=5000)' \
  --out "$out" --no-plots --quiet
{
  echo "set terminal pngcairo size 900,560 noenhanced font 'Sans,11'"
  echo "set output 'eos.png'"
  echo "set title 'full-batch GD on 5,000 MNIST images, $activation MLP, $loss: sharpness and 2/eta (dashed)'"
  echo "set xlabel 'step'; set ylabel 'top Hessian eigenvalue'; set key top right"
  echo "colours = '#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd'"
  printf 'plot'
  for i in "${!rates[@]}"; do
    k=$((i + 1))
    # The sharpness column, in the rows where it was measured.
    awk -F, 'NR > 1 && $4 != "" { print $1, $4 }' "$out/track-run$k.csv" > "$out/sharpness-run$k.dat"
    printf " 'sharpness-run%s.dat' using 1:2 with linespoints pt 7 ps 0.5 lw 2 lc rgb word(colours, %s) title 'eta = %s'," \
      "$k" "$k" "${rates[$i]}"
    printf " %s with lines dt 2 lw 1.5 lc rgb word(colours, %s) notitle," "$(awk -v r="${rates[$i]}" 'BEGIN { printf "%.6g", 2 / r }')" "$k"
  done
  echo
} | sed 's/,$//' > "$out/eos.gp"
(cd "$out" && gnuplot eos.gp)
echo "wrote $out/eos.png"
