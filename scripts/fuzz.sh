#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (-fsanitize=fuzzer,address,undefined) and runs each for a
# while: the IDX reader and the checkpoint loader, on every input libFuzzer can think of.
#
#   scripts/fuzz.sh                      each target for 60 s (a developer runs it longer: --time 3600)
#   scripts/fuzz.sh --time 20 idx_fuzz   one target
#   scripts/fuzz.sh --ctest              as CTest runs it: exit 77 (skipped) where clang or libFuzzer is missing
#
# The corpus grows in <build dir>/corpus/<target> from run to run, seeded by fuzz/make_seeds.cpp; a finding is
# written to <build dir>/findings/ and ends the script with a non-zero status, naming the file to reproduce
# it with (<build dir>/<target> <file>).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

seconds=60
build_dir="$here/build-fuzz"
skip_status=1  # what a missing clang or libFuzzer is: an error, unless --ctest
targets=()
while (($#)); do
  case "$1" in
    --time) seconds="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --ctest) skip_status=77; shift ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(idx_fuzz checkpoint_fuzz)
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --time needs a positive number of seconds, got '$seconds'" >&2; exit 2; }

# clang with libFuzzer (Debian: clang and libclang-rt-dev, which scripts/setup.sh installs).
cxx="${FUZZ_CXX:-clang++}"
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz.sh: $cxx not found: install clang (scripts/setup.sh does), or set FUZZ_CXX" >&2
  exit "$skip_status"
fi
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe_dir/probe.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" 2>"$probe_dir/error"; then
  echo "fuzz.sh: $cxx cannot link libFuzzer (Debian: install libclang-rt-dev): $(head -3 "$probe_dir/error")" >&2
  exit "$skip_status"
fi

cmake -S "$here/fuzz" -B "$build_dir" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target make_seeds "${targets[@]}" >/dev/null
"$build_dir/make_seeds" "$build_dir/seeds"

status=0
for target in "${targets[@]}"; do
  case "$target" in
    idx_fuzz) seeds="$build_dir/seeds/idx" ;;
    checkpoint_fuzz) seeds="$build_dir/seeds/checkpoint" ;;
    *) echo "fuzz.sh: unknown target $target (idx_fuzz, checkpoint_fuzz)" >&2; exit 2 ;;
  esac
  corpus="$build_dir/corpus/$target"
  findings="$build_dir/findings/$target"
  mkdir -p "$corpus" "$findings"
  echo "fuzz.sh: $target for ${seconds} s (corpus $corpus)"
  log="$build_dir/$target.log"
  # New inputs go to the first directory; the seeds are read only. 2 GiB and 10 s per input are the limits.
  if "$build_dir/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" "$seeds" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done' "$log" | sed "s/^/  /" || true
  else
    status=1
    echo "fuzz.sh: $target found a fault; the input is in $findings (reproduce: $build_dir/$target <file>)" >&2
    grep -E 'ERROR|SUMMARY|runtime error|terminate called|what\(\)|Test unit written' "$log" | head -20 >&2 || true
    echo "  (whole log: $log)" >&2
  fi
done
exit "$status"
