#!/usr/bin/env bash
# Runs the W1-W4 MNIST training benchmarks on both sides in one invocation, PyTorch
# (bench/pytorch_reference.py) and tapegrad (bench/train_bench.cpp), with the same flags and the same
# OpenBLAS settings, and prints per workload both figures and the ratio PyTorch / tapegrad
# (> 1: tapegrad is faster), plus both peak RSS figures. See bench/README.md.
#
#   scripts/bench.sh                         # all workloads, 3 repeats, 1 thread
#   scripts/bench.sh --quick                 # 1 repeat, 1,000 W3 steps: a quick look
#   scripts/bench.sh --workloads w1,w3 --repeats 5
#
# Options (the first group is passed to both programs):
#   --workloads LIST   subset of w1,w2,w3,w4 (default: all)
#   --repeats R        timed repeats, min and median reported (default 3; --quick: 1)
#   --epochs N         epochs per timed repeat (default 1)
#   --w3-steps N       timed W3 steps (default 3000; --quick: 1000)
#   --w3-warmup N      untimed W3 warm-up steps (default 200; --quick: 100)
#   --threads N        BLAS threads on both sides (default 1)
#   --data DIR         MNIST directory (default: <repo>/data/mnist, fetched if missing)
#   --preshuffle       permute the data before timing instead of gathering each batch
#   --quick            fewer repeats and W3 steps
#   --no-interleave    run each program once over all workloads (default: alternate the two
#                      programs workload by workload, so that both see the same machine load)
#   --out DIR          where results go (default: bench/results/<date-time>)
#   --skip-build       use the binary already in the build directory
#
# Environment: BUILD_DIR (default <repo>/build; always configured as Release), OPENBLAS_CORETYPE
# (default: SkylakeX on AVX-512 CPUs, Haswell on AVX2+FMA, the library's own choice).
# Writes pytorch.json, tapegrad.json, both logs and table.txt to the output directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo/build}"
python="${PYTHON:-/usr/bin/python3}"

die() {
  echo "bench.sh: $*" >&2
  exit 1
}

workloads="w1,w2,w3,w4"
repeats=""
epochs=1
w3_steps=""
w3_warmup=""
threads=1
data_dir="$repo/data/mnist"
preshuffle=0
quick=0
interleave=1
out_dir=""
skip_build=0

need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workloads) need_value "$@"; workloads="$2"; shift 2 ;;
    --repeats) need_value "$@"; repeats="$2"; shift 2 ;;
    --epochs) need_value "$@"; epochs="$2"; shift 2 ;;
    --w3-steps) need_value "$@"; w3_steps="$2"; shift 2 ;;
    --w3-warmup) need_value "$@"; w3_warmup="$2"; shift 2 ;;
    --threads) need_value "$@"; threads="$2"; shift 2 ;;
    --data) need_value "$@"; data_dir="$2"; shift 2 ;;
    --out) need_value "$@"; out_dir="$2"; shift 2 ;;
    --preshuffle) preshuffle=1; shift ;;
    --quick) quick=1; shift ;;
    --no-interleave) interleave=0; shift ;;
    --skip-build) skip_build=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
if ((quick)); then
  repeats="${repeats:-1}"
  w3_steps="${w3_steps:-1000}"
  w3_warmup="${w3_warmup:-100}"
fi
repeats="${repeats:-3}"
w3_steps="${w3_steps:-3000}"
w3_warmup="${w3_warmup:-200}"
for v in "$repeats" "$epochs" "$w3_steps" "$w3_warmup" "$threads"; do
  [[ "$v" =~ ^[0-9]+$ ]] || die "expected a non-negative integer, got '$v'"
done
IFS=',' read -r -a workload_list <<<"${workloads// /}"
for w in "${workload_list[@]}"; do
  [[ "$w" =~ ^w[1-4]$ ]] || die "unknown workload '$w' (choose from w1,w2,w3,w4)"
done
out_dir="${out_dir:-$repo/bench/results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out_dir"

# ---- build (Release, only the benchmark and what it links) and data
if ((!skip_build)); then
  echo "== building train_bench (Release) in $build_dir"
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" --target train_bench -j"$(nproc)" >"$out_dir/build.log" 2>&1 ||
    { tail -n 30 "$out_dir/build.log" >&2; die "build failed (full log: $out_dir/build.log)"; }
fi
bench_bin="$build_dir/bench/train_bench"
[[ -x "$bench_bin" ]] || die "$bench_bin not found (build it, or drop --skip-build)"

if [[ "$data_dir" == "$repo/data/mnist" ]]; then
  "$repo/scripts/fetch-mnist.sh" "$data_dir" || die "could not fetch MNIST into $data_dir"
fi

# ---- the same OpenBLAS set-up for both programs
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  flags="$(grep -m1 '^flags' /proc/cpuinfo || true)"
  has() { [[ " $flags " == *" $1 "* ]]; }
  if has avx512f && has avx512bw && has avx512dq && has avx512vl; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif has avx2 && has fma; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi
echo "== OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset (OpenBLAS detects the CPU)} OPENBLAS_NUM_THREADS=$threads"

common=(--data "$data_dir" --epochs "$epochs" --w3-steps "$w3_steps" --w3-warmup "$w3_warmup"
  --threads "$threads" --repeats "$repeats")
((preshuffle)) && common+=(--preshuffle)

have_torch=1
if ! "$python" -c 'import torch' 2>/dev/null; then
  have_torch=0
  echo "bench.sh: PyTorch is not importable by $python; install it with" >&2
  echo "    apt-get install python3-torch" >&2
  echo "bench.sh: running the tapegrad side only" >&2
fi

# ---- run: per workload, PyTorch then tapegrad (or each program once over all workloads)
if ((interleave)); then groups=("${workload_list[@]}"); else groups=("$(IFS=,; echo "${workload_list[*]}")"); fi
part_files=()
for g in "${groups[@]}"; do
  tag="${g//,/-}"
  if ((have_torch)); then
    echo "== PyTorch: $g"
    "$python" "$repo/bench/pytorch_reference.py" --workloads "$g" "${common[@]}" \
      --json "$out_dir/part-pytorch-$tag.json" 2>&1 | tee -a "$out_dir/pytorch.log" ||
      die "pytorch_reference.py failed (log: $out_dir/pytorch.log)"
  fi
  echo "== tapegrad: $g"
  "$bench_bin" --workloads "$g" "${common[@]}" --json "$out_dir/part-tapegrad-$tag.json" 2>&1 |
    tee -a "$out_dir/tapegrad.log" || die "train_bench failed (log: $out_dir/tapegrad.log)"
  part_files+=("$tag")
done

# ---- merge the parts into pytorch.json / tapegrad.json and print the table
"$python" - "$out_dir" "$workloads" "$interleave" "${part_files[@]}" <<'EOF' | tee "$out_dir/table.txt"
import json, os, sys

out_dir, workloads, interleave, tags = sys.argv[1], sys.argv[2].split(","), sys.argv[3] == "1", sys.argv[4:]
names = {"w1": "mlp", "w2": "cnn", "w3": "online", "w4": "mlp5-b10"}

def merge(side):
    merged, metas = {}, []
    for tag in tags:
        path = os.path.join(out_dir, f"part-{side}-{tag}.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            part = json.load(f)
        metas.append(part.pop("meta"))
        merged.update(part)
        os.remove(path)
    meta = dict(metas[0])
    meta["workloads"] = list(merged)
    meta["peak_rss_mb"] = max(m["peak_rss_mb"] for m in metas)
    if len(metas) > 1:
        meta["peak_rss_mb_per_process"] = {t: m["peak_rss_mb"] for t, m in zip(tags, metas)}
    meta["interleaved"] = interleave
    merged["meta"] = meta
    with open(os.path.join(out_dir, f"{side}.json"), "w") as f:
        json.dump(merged, f, indent=2)
        f.write("\n")
    return merged

pt, tg = merge("pytorch"), merge("tapegrad")

def fmt(r, key):
    if r is None:
        return "-"
    v = r[key]
    return f"{v:.1f}" if r["unit"] == "us/step" else f"{v:.3f}"

print()
m = tg["meta"]
print(f"tapegrad vs PyTorch{' ' + pt['meta']['torch'] if pt else ''}: {m['blas_info']}; "
      f"{m['repeats']} repeat(s), {m['epochs']} epoch(s), batching {m['batching']}"
      f"{', interleaved per workload' if interleave and len(tags) > 1 else ''}")
print("ratio = PyTorch time / tapegrad time (> 1: tapegrad is faster); min over repeats, median in brackets")
hdr = f"{'workload':<14} {'unit':<8} {'PyTorch':>18} {'tapegrad':>18} {'ratio':>7} {'(median)':>8}  {'loss PT':>7} {'loss tg':>7}"
print(hdr)
print("-" * len(hdr))
for k in workloads:
    a, b = (pt or {}).get(k), tg.get(k)
    if b is None:
        continue
    unit = b["unit"]
    pa = f"{fmt(a, 'min')} ({fmt(a, 'median')})" if a else "-"
    pb = f"{fmt(b, 'min')} ({fmt(b, 'median')})"
    ratio = f"{a['min'] / b['min']:.2f}x" if a else "-"
    ratio_med = f"({a['median'] / b['median']:.2f}x)" if a else ""
    la = f"{a['final_loss']:.4f}" if a else "-"
    print(f"{k + ' ' + names[k]:<14} {unit:<8} {pa:>18} {pb:>18} {ratio:>7} {ratio_med:>8}  {la:>7} {b['final_loss']:.4f}")
    if unit == "us/step":
        ea = f"{a['seconds_per_epoch_implied']:.2f}" if a else "-"
        print(f"{'  (w3 epoch)':<14} {'s/epoch':<8} {ea:>18} {b['seconds_per_epoch_implied']:>18.2f}")
rss_a = f"{pt['meta']['peak_rss_mb']:.0f}" if pt else "-"
print(f"{'peak RSS':<14} {'MB':<8} {rss_a:>18} {tg['meta']['peak_rss_mb']:>18.0f}")
print(f"results: {out_dir}/{{{'pytorch.json,' if pt else ''}tapegrad.json,table.txt}}")
EOF
