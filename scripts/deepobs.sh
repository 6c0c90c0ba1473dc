#!/usr/bin/env bash
# DeepOBS's protocol for SGD, Momentum and Adam on test problems, then AlgoPerf's performance profiles across them,
# in one command. The programs come from ${BUILD_DIR:-build}, MNIST and Fashion-MNIST from $TAPEGRAD_MNIST_DIR
# (else data/mnist; Fashion-MNIST: scripts/fetch-mnist.sh fashion); everything goes to ${OUT:-deepobs-out}/.
#   scripts/deepobs.sh                     the reduced study whose figures the README shows: mnist_mlp (16 rates over
#                                          1e-4 ... 10, 5 epochs, 5 seeds) and fmnist_mlp (9 rates over 1e-4 ... 1,
#                                          3 epochs, 3 seeds), one run at a time each
#   scripts/deepobs.sh --full              DeepOBS's budget: 36 rates over 1e-5 ... 1e2, 10 seeds, each problem's own
#                                          epochs (100), on quadratic_deep (a minute), mnist_mlp, fmnist_mlp and
#                                          fmnist_2c2d (days), with DeepOBS's momentum (0.99, its baselines' setting;
#                                          else heavy ball 0.9); quadratic_deep's and fmnist_2c2d's performance.md set
#                                          DeepOBS's published baselines beside them
#   scripts/deepobs.sh PROBLEM...          the reduced budget on other problems (--list-problems)
# Each problem's protocol output is OUT/<problem>/ (sensitivity.png, performance.md, seeds/curves.png, ...), the
# profiles (of the problems with an accuracy to reach) are OUT/profiles/ (profiles.png, profiles.md). A killed
# study started again resumes where it was (the lab's run store); under --full it also takes the finished runs in
# docs/studies/<problem>-full/. JOBS (default 1) runs that many runs at once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
out="${OUT:-deepobs-out}"
jobs="${JOBS:-1}"
export TAPEGRAD_MNIST_DIR="${TAPEGRAD_MNIST_DIR:-$here/data/mnist}"

full=0
problems=()
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) problems+=("$arg") ;;
  esac
done
if ((${#problems[@]} == 0)); then
  if ((full)); then problems=(quadratic_deep mnist_mlp fmnist_mlp fmnist_2c2d); else problems=(mnist_mlp fmnist_mlp); fi
fi

# The optimisers: SGD, momentum and Adam; under --full, momentum as DeepOBS's baselines run it.
optimizers() {
  if ((full)); then echo "sgd momentum(momentum=0.99,lr_inside=false) adam"; else echo "sgd momentum adam"; fi
}

# The budget of one problem: its lab flags.
budget() {
  if ((full)); then
    echo "--lr-grid 1e-5:1e2:36 --protocol-seeds 10"
  elif [ "$1" = mnist_mlp ]; then
    echo "--lr-grid 1e-4:1e1:16 --protocol-seeds 5 --epochs 5"
  else
    echo "--lr-grid 1e-4:1:9 --protocol-seeds 3 --epochs 3"
  fi
}

# The validation accuracy each problem is timed to (AlgoPerf's target), then a second, harder one; none for the
# function problems, which have no accuracy.
targets() {
  case "$1" in
    mnist_*) echo "--targets 0.97,0.98" ;;
    fmnist_*) echo "--targets 0.85,0.87" ;;
    quadratic_deep | two_d_*) ;;
    *) echo "--targets 0.9,0.95" ;;
  esac
}

# Under --full, the finished runs of the full study that ship with the repository (docs/studies/<problem>-full/:
# the lab's run-store files of each phase) go into the study's run stores first, and are taken as finished as a
# killed study's own are (a run whose configuration differs, other data say, is not: the lab counts it aside).
take_shipped_runs() {
  local problem="$1" phase from file
  ((full)) || return 0
  for phase in tune seeds; do
    from="$here/docs/studies/$problem-full/$phase"
    compgen -G "$from/*.result" >/dev/null || continue
    mkdir -p "$out/$problem/$phase/runs"
    for file in "$from"/*.result; do  # not cp -n: from coreutils 9.2 it fails on a file it skips
      [ -e "$out/$problem/$phase/runs/${file##*/}" ] || cp "$file" "$out/$problem/$phase/runs/"
    done
  done
}

mkdir -p "$out"
for problem in "${problems[@]}"; do
  start=$(date +%s)
  take_shipped_runs "$problem"
  rm -f "$out/$problem/performance.md"  # an earlier invocation's must not pass for this one's
  echo "# $(date -u "+%F %T") UTC: deepobs.sh starts on $problem" >> "$out/$problem.log"  # each piece of a long study
  set +e
  # shellcheck disable=SC2046
  "$build/examples/compare_optimizers" --problem "$problem" --protocol --optimizers $(optimizers) $(budget "$problem") \
    $(targets "$problem") --jobs "$jobs" --quiet --no-progress --x-axis steps --out "$out/$problem" \
    | tee -a "$out/$problem.log" | grep -E "^# protocol|chooses|^\|"
  status=${PIPESTATUS[0]}
  set -e
  if ((status != 0)) || [ ! -s "$out/$problem/performance.md" ]; then
    echo "deepobs.sh: the protocol on $problem did not finish (exit $status; see $out/$problem.log)" >&2
    exit 1
  fi
  echo "# $problem: $(($(date +%s) - start)) s of wall time"
done
dirs=()
for problem in "${problems[@]}"; do if [ -n "$(targets "$problem")" ]; then dirs+=("$out/$problem"); fi; done
if ((${#dirs[@]} > 0)); then "$build/examples/performance_profiles" "${dirs[@]}" --out "$out/profiles"; fi
