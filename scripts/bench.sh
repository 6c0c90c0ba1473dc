#!/usr/bin/env bash
# Runs the W1-W4 MNIST training benchmarks on three sides in one invocation, PyTorch
# (bench/pytorch_reference.py), libtorch (bench/libtorch_reference.cpp) and tapegrad
# (bench/train_bench.cpp), with the same flags and the same OpenBLAS settings, and prints per workload the
# three figures and the ratios tapegrad / PyTorch and tapegrad / libtorch (time over time, < 1: tapegrad
# is faster), W1's sgemm floor and W3's step floor and how close each side comes to them, the peak RSS
# figures, and the cost of a tape node on both C++ sides (bench/tape_chain.cpp).
# See bench/README.md.
#
#   scripts/bench.sh                         # all workloads, 3 repeats, 1 thread
#   scripts/bench.sh --quick                 # 1 repeat, 1,000 W3 steps: a quick look
#   scripts/bench.sh --workloads w1,w3 --repeats 5
#
# Options (the first group is passed to all three programs):
#   --workloads LIST   subset of w1,w2,w3,w4 (default: all)
#   --repeats R        timed repeats, min and median reported (default 3; --quick: 1)
#   --epochs N         epochs per timed repeat (default 1)
#   --w3-steps N       timed W3 steps (default 3000; --quick: 1000)
#   --w3-warmup N      untimed W3 warm-up steps (default 200; --quick: 100)
#   --threads N        BLAS threads on every side (default 1)
#   --data DIR         MNIST directory (default: <repo>/data/mnist, fetched if missing)
#   --preshuffle       permute the data before timing instead of gathering each batch
#   --quick            fewer repeats and W3 steps
#   --no-interleave    run each program once over all workloads (default: alternate the
#                      programs workload by workload, so that all see the same machine load)
#   --out DIR          where results go (default: bench/results/<date-time>)
#   --skip-build       use the binaries already in the build directories
#   --no-setup         do not install what is missing (scripts/setup.sh --bench: python3-torch, libtorch-dev)
#   --no-libtorch      leave the libtorch side out
#
# Environment: BUILD_DIR (default <repo>/build; always configured as Release), LIBTORCH_BUILD_DIR (default
# $BUILD_DIR/libtorch-reference: the libtorch side is configured there, with -DTAPEGRAD_BENCH_LIBTORCH=ON
# and nothing else, so that BUILD_DIR's cache never needs libtorch), OPENBLAS_CORETYPE (default: SkylakeX
# on AVX-512 CPUs, Haswell on AVX2+FMA, the library's own choice).
# Writes pytorch.json, libtorch.json, tapegrad.json, the logs and table.txt to the output directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo/build}"
libtorch_build_dir="${LIBTORCH_BUILD_DIR:-$build_dir/libtorch-reference}"
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
setup=1
use_libtorch=1

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
    --no-setup) setup=0; shift ;;
    --no-libtorch) use_libtorch=0; shift ;;
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

# ---- the references' packages, the build (Release, only the benchmarks and what they link), the data
if ((setup)); then
  "$repo/scripts/setup.sh" --bench || echo "bench.sh: scripts/setup.sh --bench failed; going on with what is there" >&2
fi
if ((!skip_build)); then
  echo "== building train_bench (Release) in $build_dir"
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build_dir" --target train_bench tape_chain -j"$(nproc)" >"$out_dir/build.log" 2>&1 ||
    { tail -n 30 "$out_dir/build.log" >&2; die "build failed (full log: $out_dir/build.log)"; }
  if ((use_libtorch)); then
    echo "== building libtorch_reference (Release) in $libtorch_build_dir"
    if cmake -S "$repo" -B "$libtorch_build_dir" -DCMAKE_BUILD_TYPE=Release -DTAPEGRAD_BENCH_LIBTORCH=ON \
      -DTAPEGRAD_BUILD_TESTS=OFF -DTAPEGRAD_BUILD_EXAMPLES=OFF -DTAPEGRAD_INSTALL=OFF >>"$out_dir/build.log" 2>&1 &&
      cmake --build "$libtorch_build_dir" --target libtorch_reference tape_chain_libtorch -j"$(nproc)" \
        >>"$out_dir/build.log" 2>&1; then
      :
    else
      echo "bench.sh: the libtorch reference did not build (apt-get install libtorch-dev; log: $out_dir/build.log)" >&2
    fi
  fi
fi
bench_bin="$build_dir/bench/train_bench"
[[ -x "$bench_bin" ]] || die "$bench_bin not found (build it, or drop --skip-build)"
libtorch_bin="$libtorch_build_dir/bench/libtorch_reference"
if ((use_libtorch)) && [[ ! -x "$libtorch_bin" ]]; then
  use_libtorch=0
  echo "bench.sh: $libtorch_bin not found; running without the libtorch side" >&2
fi

if [[ "$data_dir" == "$repo/data/mnist" ]]; then
  "$repo/scripts/fetch-mnist.sh" "$data_dir" || die "could not fetch MNIST into $data_dir"
fi

# ---- the same OpenBLAS set-up for all three programs
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
  echo "    scripts/setup.sh --bench      (or: apt-get install python3-torch)" >&2
  echo "bench.sh: running without the PyTorch side" >&2
fi

# ---- run: per workload, PyTorch, libtorch, then tapegrad (or each program once over all workloads)
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
  if ((use_libtorch)); then
    echo "== libtorch: $g"
    "$libtorch_bin" --workloads "$g" "${common[@]}" --json "$out_dir/part-libtorch-$tag.json" 2>&1 |
      tee -a "$out_dir/libtorch.log" || die "libtorch_reference failed (log: $out_dir/libtorch.log)"
  fi
  echo "== tapegrad: $g"
  "$bench_bin" --workloads "$g" "${common[@]}" --json "$out_dir/part-tapegrad-$tag.json" 2>&1 |
    tee -a "$out_dir/tapegrad.log" || die "train_bench failed (log: $out_dir/tapegrad.log)"
  part_files+=("$tag")
done

# ---- the cost of a tape node: a chain of 1,000 tiny ops, recorded and backwarded, on both C++ sides
chain_lines=()
if [[ -x "$build_dir/bench/tape_chain" ]]; then
  chain_lines+=("$("$build_dir/bench/tape_chain")")
fi
if ((use_libtorch)) && [[ -x "$libtorch_build_dir/bench/tape_chain_libtorch" ]]; then
  chain_lines+=("$("$libtorch_build_dir/bench/tape_chain_libtorch")")
fi

# ---- merge the parts into pytorch.json / tapegrad.json and print the table
{
"$python" - "$out_dir" "$workloads" "$interleave" "${part_files[@]}" <<'EOF'
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

pt, lt, tg = merge("pytorch"), merge("libtorch"), merge("tapegrad")

def fmt(r, key):
    if r is None:
        return "-"
    v = r[key]
    return f"{v:.1f}" if r["unit"] == "us/step" else f"{v:.3f}"

def ratio(ref, key):
    return f"{b[key] / ref[key]:.2f}" if ref else "-"

print()
m = tg["meta"]
refs = " and ".join(x for x in (f"PyTorch {pt['meta']['torch']}" if pt else "", f"libtorch {lt['meta']['torch']} C++" if lt else "") if x)
print(f"tapegrad vs {refs or 'nothing'}: {m['blas_info']}; "
      f"{m['repeats']} repeat(s), {m['epochs']} epoch(s), batching {m['batching']}"
      f"{', interleaved per workload' if interleave and len(tags) > 1 else ''}")
print("ratio = tapegrad time / reference time (< 1: tapegrad is faster); min over repeats, ratio of the medians in brackets")
hdr = (f"{'workload':<14} {'unit':<8} {'PyTorch':>17} {'libtorch':>17} {'tapegrad':>17} {'tg/PT':>12} {'tg/LT':>12}"
       f"  {'loss PT':>7} {'loss LT':>7} {'loss tg':>7}")
print(hdr)
print("-" * len(hdr))

def floor_line(sides, label, unit, floor_text, floor, per, what):
    """A floor's line: its value, what it is, and each side's fraction of it (floor / that side's least time);
    `sides` are one workload's PyTorch, libtorch and tapegrad results (None where a side did not run)."""
    at = lambda r: f"{100 * floor / r['min']:.0f}%" if r else "-"
    a, l, b = (at(r) for r in sides)
    print(f"{label:<14} {unit:<8} {floor_text:>17}  {what}; floor / {per}: PyTorch {a}, libtorch {l}, tapegrad {b}")

for k in workloads:
    a, l, b = (pt or {}).get(k), (lt or {}).get(k), tg.get(k)
    if b is None:
        continue
    unit = b["unit"]
    cell = lambda r: f"{fmt(r, 'min')} ({fmt(r, 'median')})" if r else "-"
    both = lambda r: f"{ratio(r, 'min')} ({ratio(r, 'median')})" if r else "-"
    loss = lambda r: f"{r['final_loss']:.4f}" if r else "-"
    print(f"{k + ' ' + names[k]:<14} {unit:<8} {cell(a):>17} {cell(l):>17} {cell(b):>17} {both(a):>12} {both(l):>12}"
          f"  {loss(a):>7} {loss(l):>7} {loss(b):>7}")
    if unit == "us/step":
        epoch = lambda r: f"{r['seconds_per_epoch_implied']:.2f}" if r else "-"
        print(f"{'  (w3 epoch)':<14} {'s/epoch':<8} {epoch(a):>17} {epoch(l):>17} {epoch(b):>17}")
    if "step_floor_us_per_step" in b:
        fl = b["step_floor_us_per_step"]
        floor_line((a, l, b), "  (w3 floor)", "us/step", f"step floor {fl:.1f}", fl, "step",
                   f"({b['step_floor_bytes'] * 1e-6:.2f} MB of weights at {b['step_floor_bytes'] / fl * 1e-3:.0f} GB/s)")
    if "bandwidth_floor_us_per_step" in b:
        bw = b["bandwidth_floor_us_per_step"]
        floor_line((a, l, b), "  (w3 bytes)", "us/step", f"bandwidth {bw:.1f}", bw, "step",
                   "(the same bytes at the measured read and read-write bandwidth, no arithmetic)")
    if "in_backward_min" in b:
        ib = b["in_backward_min"]
        rel = lambda r: f"{ib / r['min']:.2f}" if r else "-"
        floor = f"  floor / step {100 * b['step_floor_us_per_step'] / ib:.0f}%" if "step_floor_us_per_step" in b else ""
        if "bandwidth_floor_us_per_step" in b:
            floor += f", bandwidth / step {100 * b['bandwidth_floor_us_per_step'] / ib:.0f}%"
        print(f"{'  (' + k + ' fused)':<14} {unit:<8} {'':>17} {'':>17} {ib:>17.{1 if unit == 'us/step' else 3}f}"
              f" {rel(a):>12} {rel(l):>12}{floor}")
    if "gemm_floor_s_per_epoch" in b:
        fl = b["gemm_floor_s_per_epoch"]
        floor_line((a, l, b), "  (w1 floor)", "s/epoch", f"sgemm floor {fl:.3f}", fl, "epoch",
                   f"at {b['gemm_floor_gflops']:.0f} GFLOP/s on W1's {b['gemm_floor_gflop_per_epoch']:.1f} GFLOP")
rss = lambda side: f"{side['meta']['peak_rss_mb']:.0f}" if side else "-"
print(f"{'peak RSS':<14} {'MB':<8} {rss(pt):>17} {rss(lt):>17} {rss(tg):>17}")
files = ",".join(n for n, side in (("pytorch.json", pt), ("libtorch.json", lt), ("tapegrad.json", tg), ("table.txt", 1)) if side)
print(f"results: {out_dir}/{{{files}}}")
EOF
for line in "${chain_lines[@]}"; do echo "$line"; done
} | tee "$out_dir/table.txt"
