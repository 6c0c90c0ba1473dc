#!/usr/bin/env bash
# Each source document's headline tables and figures, regenerated from the real MNIST data in one command, with
# a Markdown report that puts our figures beside the document's numbers. The programs come from
# ${BUILD_DIR:-build} (compare_optimizers, and worked_example for 004), MNIST from $TAPEGRAD_MNIST_DIR
# (else data/mnist); each document's runs and report go to ${OUT:-reproduce}/<doc>/ (report.md).
#   scripts/reproduce.sh 000    the 784-128-64-10 MLP, mini-batch 200 on 50,000 images, 25 epochs: SGD, momentum,
#                               Nesterov (look-ahead), hypergradient SGD (Figures 13, 15) and Adam, Nadam, AMSGrad,
#                               NAMSGrad (Figures 14, 16: 100 % train, just over 98 % test within 25 epochs)
#   scripts/reproduce.sh 001    784-512-512-10, N(0,1)*0.01: SGD over batch sizes 64 ... 8192 with lr = 1e-3 b/64,
#                               accuracy and epoch time against batch size (Figures 4, 5); SGD, Nesterov, RMSProp,
#                               Adam at batch 1024, lr 1e-3, 10 epochs (Figures 6, 8, 9: Adam 97.7 +- 0.10 %,
#                               RMSProp 98.1 +- 0.13 %)
#   scripts/reproduce.sh 002    784-300-100-100-10: SGD over lr {0.1, 0.01, 0.001} x m {1, 10, 100}, 10 epochs
#                               (Table 2: lr 0.1, m 1 diverges), and linear decay 0.1 -> 0.001 (Table 1)
#   scripts/reproduce.sh 004    the worked example of reverse-mode differentiation (a = 150, da/df = 60)
#   scripts/reproduce.sh all    every one of them
#   --quick (first)             each on a tiny budget (a few thousand images, one epoch, one or two seeds, fewer
#                               batch sizes): the whole of `--quick all` takes about a minute; the report says so
# LAB and WORKED_EXAMPLE name the programs elsewhere than in BUILD_DIR.
# SEEDS=0,1,2 overrides a document's seeds (001: 0-4, 000: 0,1,2, 002: 0); JOBS (default 1) is the lab's --jobs.
# The lab keeps its runs in <doc>/*/runs: the same command again takes the finished runs from there.
# shellcheck disable=SC2054  # the commas are inside flag values (--hidden 512,512), not between array elements
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
out="${OUT:-reproduce}"
export TAPEGRAD_MNIST_DIR="${TAPEGRAD_MNIST_DIR:-$here/data/mnist}"
lab="${LAB:-$build/examples/compare_optimizers}"
worked_example="${WORKED_EXAMPLE:-$build/examples/worked_example}"
quick=0

# shell_words ARGS...: the arguments as one would type them, single-quoted where the shell would need it.
shell_words() {
  local word line=""
  for word in "$@"; do
    [[ "$word" =~ ^[A-Za-z0-9_./=:,+-]+$ ]] || word="'$word'"
    line="$line${line:+ }$word"
  done
  echo "$line"
}

# lab DIR ARGS...: one lab grid into DIR, its command in DIR/command.txt and its wall time in DIR/wall.txt.
lab() {
  local dir="$1"
  shift
  mkdir -p "$dir"
  local cmd=("$lab" "$@" --jobs "${JOBS:-1}" --quiet --no-progress --out "$dir")
  shell_words "${cmd[@]}" > "$dir/command.txt"
  local start=$SECONDS
  "${cmd[@]}" > "$dir/lab.log" 2>&1 || { cat "$dir/lab.log" >&2; echo "reproduce: the lab failed in $dir" >&2; return 1; }
  local wall="$((SECONDS - start)) s"
  # A run the lab took from DIR/runs (an earlier invocation's) cost nothing this time.
  local reused
  reused="$(grep -oE '[1-9][0-9]* of [0-9]+ runs finished earlier' "$dir/lab.log" | head -1)" || true
  [ -n "$reused" ] && wall="$wall (runs taken from an earlier invocation's store: $reused)"
  echo "$wall" > "$dir/wall.txt"
  echo "  $dir: $wall"
}

# columns FILE NAME...: the named columns of one of the lab's CSV files, space-separated, a line a row (the
# quoted spec, which holds commas, emptied first; an empty value becomes "-").
columns() {
  local file="$1"
  shift
  sed -E 's/"[^"]*"//' "$file" | awk -F, -v names="$*" '
    NR == 1 { for (i = 1; i <= NF; i++) at[$i] = i; n = split(names, want, " "); next }
    { line = ""; for (k = 1; k <= n; k++) { v = $(at[want[k]]); line = line (k > 1 ? " " : "") (v == "" ? "-" : v) }
      print line }'
}

# pct MEAN STD: "97.70 ± 0.10" from fractions.
pct() { awk -v m="$1" -v s="$2" 'BEGIN { if (m == "-") print "—"; else printf "%.2f ± %.2f", 100 * m, 100 * s }'; }

# last_train_acc DIR OPTIMIZER: the mean over seeds of the last epoch's training accuracy (curves.csv), in %.
last_train_acc() {
  columns "$1/curves.csv" optimizer seed epoch train_acc | awk -v o="$2" '
    $1 == o { if ($3 > last[$2]) last[$2] = $3; acc[$2 "," $3] = $4 }
    END { for (s in last) { sum += acc[s "," last[s]]; n++ } if (n) printf "%.2f", 100 * sum / n; else print "—" }'
}

# diverged_at DIR LR BATCH: how the diverged runs of that configuration ended, from runs.csv.
diverged_at() {
  columns "$1/runs.csv" lr batch_size diverged steps | awk -v lr="$2" -v b="$3" '
    $1 == lr && $2 == b && $3 == 1 { n++; steps = steps (steps ? ", " : "") $4 }
    END { if (n) printf "diverged (%d run(s), a step loss above --max-loss at step %s)", n, steps }'
}

# report_head DOC TITLE: the report's title, the mode and the machine.
report_head() {
  {
    echo "# $2"
    echo
    if [ "$quick" = 1 ] && [ "$1" = 004 ]; then
      echo "**Quick run** (\`--quick\`): the worked example has no training budget, so it is the same as the full run."
    elif [ "$quick" = 1 ]; then
      echo "**Quick run** (\`--quick\`): a tiny budget that checks the pipeline; its numbers are not comparable with"
      echo "the document's. Run \`scripts/reproduce.sh $1\` for the real budget."
    else
      echo "Full run."
    fi
    echo
    echo "Generated $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) core(s), load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
  } > "$out/$1/report.md.partial"
}

# finish_report DIR: the report written whole replaces DIR/report.md (a run stopped half-way leaves the old one).
finish_report() {
  mv "$1/report.md.partial" "$1/report.md"
  echo "wrote $1/report.md"
}

# report_runs DOC DIR...: the exact command, wall time and figure of each grid.
report_runs() {
  local doc="$1" dir
  shift
  for dir in "$@"; do
    local rel="${dir#"$out/$doc/"}"
    {
      echo "**\`$rel\`** — wall time $(cat "$dir/wall.txt"); [summary]($rel/summary.md), [curves.csv]($rel/curves.csv)"
      echo
      [ -f "$dir/curves.png" ] && echo "![$rel]($rel/curves.png)" && echo
      echo '```sh'
      cat "$dir/command.txt"
      echo '```'
      echo
    } >> "$out/$doc/report.md.partial"
  done
}

doc_004() {
  local dir="$out/004" program="$worked_example"
  mkdir -p "$dir"
  local start=$SECONDS
  "$program" 4 2 > "$dir/values.txt"
  echo "$((SECONDS - start)) s" > "$dir/wall.txt"
  value() { awk -v k="$1" '$1 == k { print $2 }' "$dir/values.txt"; }
  report_head 004 "004: the worked example of reverse-mode differentiation (Examples 3.1, 3.2)"
  {
    echo "a = b c, b = d + e, c = e + 2, d = 3 + f, e = f g at f = 4, g = 2; one forward pass on the tape, one"
    echo "backward pass from a. The closed forms are the document's step v (da/df = 2 + 5g + 2fg + 2fg²) and a direct"
    echo "expansion."
    echo
    echo "| quantity | document | ours (tape) | closed form |"
    echo "|---|---:|---:|---:|"
    echo "| a | 150 | $(value a) | $(value closed_form_a) |"
    echo "| da/df | 60 | $(value da/df) | $(value closed_form_da/df) |"
    echo "| da/dg | — | $(value da/dg) | $(value closed_form_da/dg) |"
    echo
    echo "Command: \`$program 4 2\` — wall time $(cat "$dir/wall.txt")."
  } >> "$dir/report.md.partial"
  finish_report "$dir"
}

# The 002 grids: SGD on 784-300-100-100-10; a step whose loss exceeds 100 stops the run as diverged (see the report).
doc_002_budget() {
  if [ "$quick" = 1 ]; then
    # 12,000 images keep the lr 0.1, m = 1 blow-up (it comes after a few thousand steps).
    seeds="${SEEDS:-0}"
    budget=(--train-subset 12000 --epochs 1 --seeds "$seeds")
  else
    seeds="${SEEDS:-0}"
    budget=(--epochs 10 --seeds "$seeds")
  fi
  common=(--model mlp --hidden 300,100,100 --batch-sizes 1,10,100 --max-loss 100 "${budget[@]}")
}

doc_002() {
  local dir="$out/002" budget common seeds
  doc_002_budget
  lab "$dir/table2" "${common[@]}" --optimizers 'sgd(lr=[0.1,0.01,0.001])'
  lab "$dir/table1" "${common[@]}" --optimizers 'sgd(lr=0.1)' --schedule 'linear(final=0.001)' --lr-per-epoch
  report_head 002 "002: SGD on the 784-300-100-100-10 MLP (Tables 1 and 2)"
  {
    echo "## Table 2: SGD, lr × m"
    echo
    echo "Document: one run each, 10 epochs on 60,000 images, tested on 10,000; its \"Avg Loss\" beside our final"
    echo "training loss (the mean over the last epoch's batches). Ours: mean ± std over seeds $seeds."
    echo
    doc_002_header lr
    doc_002_row "$dir/table2" 0.1 1 "diverged (NaN)" 9.8 3533
    doc_002_row "$dir/table2" 0.1 10 0.025 97.7 3268
    doc_002_row "$dir/table2" 0.1 100 0.017 97.6 3268
    doc_002_row "$dir/table2" 0.01 1 0.027 97.7 3557
    doc_002_row "$dir/table2" 0.01 10 0.019 97.6 3338
    doc_002_row "$dir/table2" 0.01 100 0.17 95.0 3301
    doc_002_row "$dir/table2" 0.001 1 0.019 97.8 3553
    doc_002_row "$dir/table2" 0.001 10 0.16 95.2 3332
    doc_002_row "$dir/table2" 0.001 100 0.53 87.2 3288
    echo
    doc_002_divergence_note
    echo "## Table 1: linear decay 0.1 → 0.001 (η_k = η_0 (1 − k/N) + η_N k/N, k the epoch)"
    echo
    doc_002_header "η_0"
    doc_002_row "$dir/table1" 0.1 1 2.303 9.8 —
    doc_002_row "$dir/table1" 0.1 10 0.002 98.3 —
    doc_002_row "$dir/table1" 0.1 100 0.031 97.7 —
    echo
    echo "## Runs"
    echo
  } >> "$dir/report.md.partial"
  report_runs 002 "$dir/table2" "$dir/table1"
  finish_report "$dir"
}

doc_002_header() {
  echo "| $1 | m | document: loss | document: test acc (%) | document: s per run | ours: train loss | ours: test acc (%) | ours: s per run |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
}

# doc_002_row DIR LR M DOC_LOSS DOC_ACC DOC_SECONDS: one row of a 002 table, ours from DIR's summary.csv.
doc_002_row() {
  local runs diverged acc acc_sd loss loss_sd secs ours
  read -r runs diverged acc acc_sd loss loss_sd secs < <(columns "$1/summary.csv" lr batch_size runs diverged \
    final_test_acc_mean final_test_acc_std final_train_loss_mean final_train_loss_std seconds_mean |
    awk -v lr="$2" -v m="$3" '$1 == lr && $2 == m { $1 = $2 = ""; print }') || true
  if [ -z "${runs:-}" ]; then
    echo "| $2 | $3 | $4 | $5 | $6 | not run | | |"
    return
  fi
  if [ "$diverged" -gt 0 ]; then
    ours="$(diverged_at "$1" "$2" "$3")"
    [ "$diverged" -lt "$runs" ] && ours="$ours; the others $(awk -v l="$loss" 'BEGIN { printf "%.3f", l }')"
  else
    ours="$(awk -v l="$loss" -v s="$loss_sd" 'BEGIN { printf "%.3f ± %.3f", l, s }')"
  fi
  secs="$(awk -v s="$secs" 'BEGIN { if (s == "-" || s == 0) print "—"; else printf "%.1f", s }')"
  echo "| $2 | $3 | $4 | $5 | $6 | $ours | $(pct "$acc" "$acc_sd") | $secs |"
}

doc_002_divergence_note() {
  echo "The document's lr 0.1, m = 1 run ended with a NaN loss and a constant 9.8 % (one class). Our cross-entropy"
  echo "comes from a stable log-softmax, so the same blow-up shows as a single-sample loss that explodes (past 100,"
  echo "i.e. p(true class) < e^-100, and on to 1e4 and beyond) and a network whose ReLUs die, stuck near 10 %. The"
  echo "lab stops a run as diverged at the first step whose loss exceeds \`--max-loss 100\`; diverged runs are left"
  echo "out of the means (the step where each one stopped is given)."
  echo
}

# The 001 network: 3 fully connected layers, ReLU, ReLU, softmax; 512 hidden units a layer (001 gives no widths).
doc_001_budget() {
  if [ "$quick" = 1 ]; then
    seeds="${SEEDS:-0,1}"
    budget=(--train-subset 2000 --epochs 1 --seeds "$seeds")
    batch_sizes=(64 1024)
  else
    seeds="${SEEDS:-0,1,2,3,4}"
    budget=(--epochs 10 --seeds "$seeds")
    batch_sizes=(64 128 256 512 1024 2048 4096 8192)
  fi
  common=(--model mlp --hidden 512,512 --init normal "${budget[@]}")
}

doc_001() {
  local dir="$out/001" budget common batch_sizes b lr seeds
  doc_001_budget
  lab "$dir/optimizers" "${common[@]}" --batch-sizes 1024 \
    --optimizers 'sgd(lr=1e-3)' 'nesterov(lr=1e-3,momentum=0.9)' 'rmsprop(lr=1e-3)' 'adam(lr=1e-3)'
  for b in "${batch_sizes[@]}"; do
    # The linear scaling rule, lr = 1e-3 b / 64; 001 stops it at 8192, where it keeps 1e-3 * 4096 / 64.
    lr="$(awk -v b="$b" 'BEGIN { if (b > 4096) b = 4096; printf "%g", 1e-3 * b / 64 }')"
    lab "$dir/batch/b$b" "${common[@]}" --batch-sizes "$b" --optimizers "sgd(lr=$lr)"
  done
  doc_001_batch_figure "$dir"
  report_head 001 "001: batch size, the linear scaling rule and the optimisers (Figures 4, 5, 6, 8, 9)"
  {
    echo "784-512-512-10 (001 does not give its widths), ReLU, ReLU, softmax, initialised N(0,1) × 0.01; trained on"
    echo "the 60,000 training images and tested on the 10,000 test images (001 also held out a validation set)."
    echo "Mean ± std over seeds $seeds. Epoch seconds: training only, one BLAS thread, on a CPU (001's were on a GPU);"
    echo "they move with the machine's load (in the header above), which is why their spread is wide."
    echo
    echo "## Figures 4 and 5: SGD over batch sizes, lr = 1e-3 · b / 64"
    echo
    echo "| batch | lr | document: test acc (%) | ours: test acc (%) | ours: s per epoch |"
    echo "|---:|---:|---:|---:|---:|"
    awk '{ doc = $1 == 64 ? "39.6 ± 9.9" : $1 == 256 ? "42.16 ± 6.3" : "— (Figure 5 only)"
           printf "| %s | %s | %s | %.2f ± %.2f | %.2f ± %.2f |\n", $1, $2, doc, $3, $4, $5, $6 }' "$dir/batch.dat"
    echo
    echo "![accuracy and epoch time against batch size](batch.png)"
    echo
    echo "## Figures 6, 8 and 9: optimisers at batch 1024, lr 1e-3 (β = β1 = 0.9, β2 = 0.999, ε = 1e-8)"
    echo
    echo "| optimiser | document: final test acc (%) | ours: final test acc (%) | ours: best test acc (%) | ours: s per run |"
    echo "|---|---:|---:|---:|---:|"
    columns "$dir/optimizers/summary.csv" optimizer final_test_acc_mean final_test_acc_std best_test_acc_mean \
      best_test_acc_std seconds_mean | awk '{
      doc = $1 == "adam" ? "97.7 ± 0.10" : $1 == "rmsprop" ? "98.1 ± 0.13" : $1 == "nesterov" ? "— (above SGD, Figure 6)" : "—"
      printf "| %s | %s | %.2f ± %.2f | %.2f ± %.2f | %.1f |\n", $1, doc, 100 * $2, 100 * $3, 100 * $4, 100 * $5, $6 }'
    echo
    echo "## Runs"
    echo
  } >> "$dir/report.md.partial"
  local grids=()
  for b in "${batch_sizes[@]}"; do grids+=("$dir/batch/b$b"); done  # this budget's, not an earlier one's
  report_runs 001 "${grids[@]}" "$dir/optimizers"
  finish_report "$dir"
}

# doc_001_batch_figure DIR: DIR/batch.dat (batch, lr, test acc % mean, std, epoch seconds mean, std) and batch.png.
doc_001_batch_figure() {
  local dir="$1" b sub
  : > "$dir/batch.dat"
  for b in "${batch_sizes[@]}"; do  # doc_001's: this budget's grids, not an earlier budget's left in DIR
    sub="$dir/batch/b$b"
    # Per-epoch seconds from curves.csv (column 14 once the spec is emptied), the accuracy from summary.csv.
    columns "$sub/curves.csv" seconds | awk -v b="$b" \
      -v acc="$(columns "$sub/summary.csv" lr final_test_acc_mean final_test_acc_std)" '
      { n++; s += $1; ss += $1 * $1 }
      END { split(acc, a, " "); m = s / n; v = n > 1 ? (ss - n * m * m) / (n - 1) : 0; sd = v > 0 ? sqrt(v) : 0
            printf "%s %s %.2f %.2f %.3f %.3f\n", b, a[1], 100 * a[2], 100 * a[3], m, sd }' >> "$dir/batch.dat"
  done
  sort -n -o "$dir/batch.dat" "$dir/batch.dat"
  cat > "$dir/batch.gp" <<'EOF'
set terminal pngcairo size 1000,420 noenhanced font 'Sans,11'
set output 'batch.png'
set multiplot layout 1,2 title '001: SGD with lr = 1e-3 b/64 (784-512-512-10), mean and std over the seeds'
set grid; set key off; set logscale x 2; set xlabel 'batch size'
set ylabel 'final test accuracy (%)'
plot 'batch.dat' using 1:3:4 with yerrorlines pt 7 lw 2 lc rgb '#1f77b4'
set ylabel 'seconds per epoch (training)'; set logscale y
plot 'batch.dat' using 1:5:6 with yerrorlines pt 7 lw 2 lc rgb '#d62728'
unset multiplot
EOF
  if command -v gnuplot > /dev/null; then (cd "$dir" && gnuplot batch.gp); fi
}

# 000: the 784-128-64-10 MLP, mini-batches of 200 from the first 50,000 training images, tested on the 10,000.
# 000 gives no learning rates: every optimiser runs at the lab's default (listed in each grid's summary.md).
doc_000() {
  local dir="$out/000" budget seeds
  if [ "$quick" = 1 ]; then
    seeds="${SEEDS:-0}"
    budget=(--train-subset 2000 --epochs 1 --seeds "$seeds")
  else
    seeds="${SEEDS:-0,1,2}"
    budget=(--train-subset 50000 --epochs 25 --seeds "$seeds")
  fi
  local common=(--model mlp --hidden 128,64 --batch-sizes 200 "${budget[@]}")
  lab "$dir/sgd-family" "${common[@]}" --optimizers sgd momentum nesterov-lookahead sgd-hd
  lab "$dir/adam-family" "${common[@]}" --optimizers adam nadam amsgrad namsgrad
  report_head 000 "000: optimisers on the 784-128-64-10 MLP, mini-batch 200 (Figures 13 to 16)"
  {
    echo "Mini-batch 200 from the first 50,000 training images, tested on the 10,000 test images; 000 names no"
    echo "learning rates, so each optimiser runs at the lab's default (the resolved specs are in each summary.md)."
    echo "000 shows one run per optimiser; ours are mean ± std over seeds $seeds. Train accuracy: the last epoch's"
    echo "batches."
    echo
    echo "## Figure 16: \"100 % train and just over 98 % test within 25 epochs\" (NAMSGrad in under 20)"
    echo
    echo "| optimiser | document | ours: last-epoch train acc (%) | ours: best test acc (%) | ours: final test acc (%) | ours: epochs to 98 % | ours: s per run |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    doc_000_rows "$dir/adam-family" "100 % train, just over 98 % test, within 25 epochs"
    echo
    echo "## Figures 13 and 15: SGD, momentum, Nesterov (look-ahead), hypergradient SGD"
    echo
    echo "| optimiser | document | ours: last-epoch train acc (%) | ours: best test acc (%) | ours: final test acc (%) | ours: epochs to 98 % | ours: s per run |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    doc_000_rows "$dir/sgd-family" "comparable (13); hypergradient a small edge over SGD (15)"
    echo
    echo "## Runs"
    echo
  } >> "$dir/report.md.partial"
  report_runs 000 "$dir/adam-family" "$dir/sgd-family"
  finish_report "$dir"
}

# doc_000_rows DIR DOC: a row per optimiser of DIR's grid.
doc_000_rows() {
  local name acc acc_sd best best_sd e98 reached runs secs
  while read -r name acc acc_sd best best_sd e98 reached runs secs; do
    local doc="$2"
    [ "$name" = namsgrad ] && doc="$doc (NAMSGrad: under 20 epochs)"
    [ "$e98" = - ] && e98=never || e98="$(awk -v e="$e98" -v k="$reached" -v n="$runs" \
      'BEGIN { printf "%.1f%s", e, k < n ? " (" k "/" n ")" : "" }')"
    echo "| $name | $doc | $(last_train_acc "$1" "$name") | $(pct "$best" "$best_sd") | $(pct "$acc" "$acc_sd") | $e98 | $(awk -v s="$secs" 'BEGIN { printf "%.2f", s }') |"
  done < <(columns "$1/summary.csv" optimizer final_test_acc_mean final_test_acc_std best_test_acc_mean best_test_acc_std \
    epochs_to_98_mean reached_98 runs seconds_mean)
}

main() {
  if [ "${1:-}" = --quick ]; then
    quick=1
    shift
  fi
  case "${1:-}" in
    000 | 001 | 002 | 004) "doc_$1" ;;
    # Each its own command, so that set -e stops at the first failure (inside an && list it would not).
    all)
      doc_004
      doc_002
      doc_001
      doc_000
      ;;
    *)
      echo "usage: scripts/reproduce.sh [--quick] 000|001|002|004|all" >&2
      exit 2
      ;;
  esac
}

main "$@"
