#!/usr/bin/env bash
# The lab's grid scaled out, as a user runs it (registered with CTest by tests/CMakeLists.txt):
#   lab_scaleout.sh mpi    COMPARE_OPTIMIZERS   mpirun -np 2 gives the outputs of a serial grid (of the protocol too)
#   lab_scaleout.sh resume COMPARE_OPTIMIZERS   a grid killed by SIGKILL and restarted with the same command ends
#                                               with the outputs of an uninterrupted grid; a changed command
#                                               reuses nothing
# "The same outputs": summary.csv and curves.csv byte for byte, their timing columns (the last ones) cut off.
# Exit 77: skipped (CTest's SKIP_RETURN_CODE), with the reason on stdout.
set -euo pipefail
mode="$1"
lab="$2"
work="$(mktemp -d "${TMPDIR:-/tmp}/lab_scaleout.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A small grid: 2 optimisers x 2 seeds, 4 epochs of a 784-32-10 MLP on 3,000 training images.
grid_of() {  # grid_of EPOCHS
  grid=(--optimizers adam 'sgd(lr=0.1)' --seeds 0,1 --batch-sizes 100 --epochs "$1" --hidden 32 --train-subset 3000
        --no-plots --no-progress)
}
grid_of 4

fail() {
  echo "FAIL: $*"
  exit 1
}

# The file without its timing columns (the last two of summary.csv, the last of curves.csv: numbers, no commas).
untimed() {
  case "$(basename "$1")" in
    summary.csv) sed -E 's/,[^,]*,[^,]*$//' "$1" ;;
    curves.csv) sed -E 's/,[^,]*$//' "$1" ;;
  esac
}

same_outputs() {  # same_outputs DIR_A DIR_B WHAT
  for file in summary.csv curves.csv; do
    [ -s "$1/$file" ] || fail "$3: $1/$file is missing or empty"
    [ -s "$2/$file" ] || fail "$3: $2/$file is missing or empty"
    if ! diff <(untimed "$1/$file") <(untimed "$2/$file") >"$work/diff"; then
      cat "$work/diff"
      fail "$3: $file differs (timings aside)"
    fi
  done
  [ "$(wc -l <"$1/summary.csv")" -eq 3 ] || fail "$3: summary.csv should hold a header and 2 configurations"
}

# Ctrl-C (SIGINT to the lab's process group: the lab and its workers) while two workers train: their runs are
# reported interrupted (not failed, not diverged, not results), none is stored as finished, the grid says that the
# same command resumes it and exits 130; the same command then ends with the outputs of an uninterrupted grid.
interrupted_by_ctrl_c() {
  local long=(--optimizers adam 'sgd(lr=0.1)' --seeds 0,1 --batch-sizes 100 --epochs 30 --hidden 32
              --train-subset 10000 --no-plots --no-progress --jobs 2)
  "$lab" "${long[@]}" --out "$work/whole" >"$work/whole.log" 2>&1 || { cat "$work/whole.log"; fail "the long grid"; }
  set -m  # the grid in a process group of its own, as a terminal's job
  "$lab" "${long[@]}" --out "$work/ctrl-c" >"$work/ctrl-c1.log" 2>"$work/ctrl-c1.err" &
  local pid=$!
  set +m
  for _ in $(seq 1 3000); do
    [ "$(ls "$work"/ctrl-c/runs/*.ckpt 2>/dev/null | wc -l)" -ge 2 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -INT -- "-$pid" 2>/dev/null || fail "the grid ended before Ctrl-C"
  local status=0
  wait "$pid" || status=$?
  [ "$status" -eq 130 ] || { cat "$work/ctrl-c1.log" "$work/ctrl-c1.err"; fail "Ctrl-C: exit status $status, not 130"; }
  local runs="$work/ctrl-c/runs.csv"
  if grep -q "signal\|failed" "$runs" "$work/ctrl-c1.log"; then
    cat "$runs" "$work/ctrl-c1.log"
    fail "Ctrl-C: a run was reported as failed"
  fi
  # A row ends with diverged,interrupted,divergence: ",0,1," interrupted, ",0,0," finished.
  local stopped finished
  stopped="$(grep -c ',0,1,$' "$runs" || true)"
  finished="$(grep -c ',0,0,$' "$runs" || true)"
  [ "$stopped" -ge 1 ] && [ "$((stopped + finished + 1))" -eq "$(wc -l <"$runs")" ] \
    || { cat "$runs"; fail "Ctrl-C: runs.csv should hold interrupted and finished runs only, one interrupted at least"; }
  [ "$(ls "$work"/ctrl-c/runs/*.result 2>/dev/null | wc -l)" -eq "$finished" ] \
    || { ls "$work/ctrl-c/runs"; fail "Ctrl-C: the store holds results besides the $finished finished run(s)"; }
  grep -q "run [1-4]: interrupted after step [0-9]*, [0-9]* whole epoch(s): not a result" "$work/ctrl-c1.log" \
    || { cat "$work/ctrl-c1.log"; fail "Ctrl-C: no run was reported as interrupted"; }
  grep -q "interrupted: the grid stops with $finished of 4 runs finished and $stopped interrupted; the same command resumes it" \
    "$work/ctrl-c1.log" || { cat "$work/ctrl-c1.log"; fail "Ctrl-C: the grid did not say how to resume it"; }
  grep -q "compare_optimizers: interrupted; the same command resumes it" "$work/ctrl-c1.err" \
    || { cat "$work/ctrl-c1.err"; fail "Ctrl-C: nothing on stderr"; }
  "$lab" "${long[@]}" --out "$work/ctrl-c" >"$work/ctrl-c2.log" 2>&1 || { cat "$work/ctrl-c2.log"; fail "the grid resumed after Ctrl-C"; }
  grep -q "runs: $finished of 4 runs finished earlier" "$work/ctrl-c2.log" \
    || { cat "$work/ctrl-c2.log"; fail "Ctrl-C: the finished runs were not taken from the store"; }
  same_outputs "$work/whole" "$work/ctrl-c" "interrupted by Ctrl-C and resumed against uninterrupted"
  echo "Ctrl-C with --jobs 2: the runs reported interrupted, none stored as finished; the same command resumed the grid"
}

"$lab" "${grid[@]}" --jobs 1 --out "$work/serial" >"$work/serial.log" 2>&1 || { cat "$work/serial.log"; fail "the serial grid"; }

case "$mode" in
mpi)
  command -v mpirun >/dev/null || { echo "skipped: mpirun is not installed (openmpi-bin)"; exit 77; }
  # Loopback only, two ranks on however many cores, also as root (CI containers).
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
  export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
  if ! timeout 50 mpirun -np 2 --oversubscribe "$lab" "${grid[@]}" --out "$work/mpi" >"$work/mpi.log" 2>&1; then
    cat "$work/mpi.log"
    fail "mpirun -np 2 (exit status $?)"
  fi
  grep -q "MPI: 2 ranks share the grid" "$work/mpi.log" || { cat "$work/mpi.log"; fail "the grid was not shared among 2 ranks"; }
  grep -q "(rank 1)" "$work/mpi.log" || { cat "$work/mpi.log"; fail "rank 1 ran none of the runs"; }
  same_outputs "$work/serial" "$work/mpi" "mpirun -np 2 against the serial grid"
  # Rank 1 failing (the checkpoint of its first run, adam with seed 1, cannot be written: its path is a
  # directory) ends every rank with a message naming the rank, the run and why, instead of a hang.
  failing="$(grep -l "^seed 1$" $(grep -l "^optimizer adam" "$work"/serial/runs/*.result))"
  mkdir -p "$work/failing/runs/$(basename "$failing" .result).ckpt/x"
  status=0
  timeout 50 mpirun -np 2 --oversubscribe "$lab" "${grid[@]}" --out "$work/failing" >"$work/failing.log" 2>&1 || status=$?
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] || { cat "$work/failing.log"; fail "a failing rank: exit status $status"; }
  grep -q "rank 1 of 2: run 2 (adam.* seed=1): the checkpoint .*: is a directory.*; ending every rank" "$work/failing.log" \
    || { cat "$work/failing.log"; fail "the failing rank did not say which run failed and why"; }
  [ ! -e "$work/failing/summary.csv" ] || fail "a grid whose rank failed wrote its summary"
  # DeepOBS's protocol: both phases shared, rank 0's choice reaching rank 1, the serial protocol's tables.
  protocol=(--protocol --optimizers sgd adam --lr-grid 1e-3:1e-1:3 --protocol-seeds 2 --epochs 1 --hidden 16
            --train-subset 2000 --batch-sizes 100 --no-plots --no-progress --quiet)
  "$lab" "${protocol[@]}" --jobs 1 --out "$work/protocol-serial" >"$work/protocol-serial.log" 2>&1 \
    || { cat "$work/protocol-serial.log"; fail "the serial protocol"; }
  timeout 100 mpirun -np 2 --oversubscribe "$lab" "${protocol[@]}" --out "$work/protocol-mpi" >"$work/protocol-mpi.log" 2>&1 \
    || { cat "$work/protocol-mpi.log"; fail "the protocol under mpirun -np 2"; }
  for file in sensitivity.csv performance.csv; do
    cmp -s "$work/protocol-serial/$file" "$work/protocol-mpi/$file" \
      || { diff "$work/protocol-serial/$file" "$work/protocol-mpi/$file"; fail "the protocol's $file under MPI differs"; }
  done
  sed -n '/phase 2/,$p' "$work/protocol-mpi.log" | grep -q "(rank 1)" \
    || { cat "$work/protocol-mpi.log"; fail "rank 1 ran none of phase 2's runs"; }
  # The same on a function problem (no data set: its results cross between the ranks with NaN accuracies).
  function_protocol=(--problem quadratic_deep --protocol --optimizers sgd adam --lr-grid 1e-3:1e-1:4
                     --protocol-seeds 3 --epochs 10 --no-plots --no-progress --quiet)
  "$lab" "${function_protocol[@]}" --jobs 1 --out "$work/function-serial" >"$work/function-serial.log" 2>&1 \
    || { cat "$work/function-serial.log"; fail "the serial protocol on quadratic_deep"; }
  timeout 100 mpirun -np 2 --oversubscribe "$lab" "${function_protocol[@]}" --out "$work/function-mpi" \
    >"$work/function-mpi.log" 2>&1 || { cat "$work/function-mpi.log"; fail "the protocol on quadratic_deep under mpirun -np 2"; }
  for file in sensitivity.csv performance.csv; do
    cmp -s "$work/function-serial/$file" "$work/function-mpi/$file" \
      || { diff "$work/function-serial/$file" "$work/function-mpi/$file"; fail "quadratic_deep's $file under MPI differs"; }
  done
  echo "mpirun -np 2: the same summary and curves as the serial grid; a failing rank ends the grid, named;"
  echo "the protocol's both phases shared, with the serial protocol's sensitivity and performance tables (of"
  echo "quadratic_deep too)"
  ;;
resume)
  # Kill the grid (one run at a time) once a run is finished and the next has its epochs and a checkpoint.
  "$lab" "${grid[@]}" --jobs 1 --out "$work/killed" >"$work/killed1.log" 2>&1 &
  pid=$!
  # (A finished run's epochs are removed just after its result is written: the epochs must be another run's.)
  under_way() {
    compgen -G "$work/killed/runs/*.result" >/dev/null || return 1
    for epochs in "$work"/killed/runs/*.epochs; do
      [ -e "$epochs" ] && [ -e "${epochs%.epochs}.ckpt" ] && [ ! -e "${epochs%.epochs}.result" ] && return 0
    done
    return 1
  }
  for _ in $(seq 1 3000); do
    under_way && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null || fail "the grid ended before it could be killed"
  wait "$pid" 2>/dev/null || true
  [ ! -e "$work/killed/summary.csv" ] || fail "a killed grid wrote its summary"
  "$lab" "${grid[@]}" --jobs 1 --out "$work/killed" >"$work/killed2.log" 2>&1 || { cat "$work/killed2.log"; fail "the restarted grid"; }
  grep -Eq "runs: [1-3] of 4 runs finished earlier" "$work/killed2.log" || { cat "$work/killed2.log"; fail "no finished run was taken from the store"; }
  grep -q "resumed from .* after [1-3] epoch" "$work/killed2.log" || { cat "$work/killed2.log"; fail "no run was resumed from its checkpoint"; }
  same_outputs "$work/serial" "$work/killed" "killed and restarted against uninterrupted"
  # Restarted again: everything from the store, nothing trained.
  "$lab" "${grid[@]}" --jobs 2 --out "$work/killed" >"$work/killed3.log" 2>&1 || { cat "$work/killed3.log"; fail "the third start"; }
  grep -q "runs: 4 of 4 runs finished earlier" "$work/killed3.log" || { cat "$work/killed3.log"; fail "the finished grid was run again"; }
  same_outputs "$work/serial" "$work/killed" "the finished grid restarted"
  # A changed command (5 epochs) reuses nothing, and says so.
  grid_of 5
  "$lab" "${grid[@]}" --jobs 2 --out "$work/killed" >"$work/changed.log" 2>&1 || { cat "$work/changed.log"; fail "the changed grid"; }
  grep -q "runs: 0 of 4 runs finished earlier.*4 stored run(s) of other configurations" "$work/changed.log" \
    || { cat "$work/changed.log"; fail "a changed command reused stored runs or did not say it ignored them"; }
  [ "$(grep -c ',100,1,5,' "$work/killed/curves.csv")" -eq 2 ] || fail "the changed grid did not run 5 epochs"
  echo "killed by SIGKILL and restarted: the same summary and curves as an uninterrupted grid"
  interrupted_by_ctrl_c
  ;;
*)
  fail "unknown mode '$mode' (mpi or resume)"
  ;;
esac
