#!/usr/bin/python3
"""PyTorch reference timings for the tapegrad benchmark workloads W1..W4.

Runs the same four MNIST training workloads as the C++ bench binary with PyTorch (CPU)
and reports training time only, so that the two can be compared as a ratio in the same run
(see bench/README.md and docs PERFORMANCE.md).

  W1 mlp        784-128-64-10 ReLU, softmax-CE, batch 200, Adam lr 1e-3   -> seconds per epoch
  W2 cnn        conv3x3(1->8,p1) ReLU maxpool2 -> conv3x3(8->8,p1) ReLU maxpool2
                -> flatten(392) -> FC 128 ReLU -> FC 10, batch 200, Adam lr 1e-3 -> seconds per epoch
  W3 online     784-300-100-100-10 ReLU, batch 1, SGD lr 0.01             -> microseconds per step
  W4 mlp5-b10   784-300-100-100-10 ReLU, batch 10, SGD lr 0.1             -> seconds per epoch

What is timed (per repeat, fresh model with a fixed seed every repeat):
  * The data set is loaded into float32/int64 tensors before anything is timed.
  * The per-epoch shuffle is an index permutation from a fixed-seed generator (seed + epoch),
    computed before the timer starts. Inside the timed loop each mini-batch is gathered with
    X[perm[i:i+B]] as an ordinary training loop would do, then forward, loss, zero_grad,
    backward, optimiser step, and loss.item() accumulated for the epoch's mean loss.
  * The last partial batch is kept (60,000 divides 200 and 10 exactly, so there is none).
  * Before the repeats, each workload runs a short untimed warm-up (20 steps, 200 for W3) on a
    throw-away model so that one-off allocator and kernel-selection costs are not measured.
  * W3 is measured over --w3-steps steps after a warm-up of --w3-warmup steps on the same model
    (the steps walk through a shuffled epoch); the implied epoch time is us * 60000 / 1e6.
The headline figure is the minimum over --repeats runs; the median is reported too.
With --preshuffle the whole training set is permuted (copied) before the timer starts and the loop
takes contiguous slices X[i:i+B] instead (no per-batch gather).

BLAS set-up (Debian's torch calls the system OpenBLAS, which torch.set_num_threads does not
control): before torch is imported, the script sets OPENBLAS_NUM_THREADS and OMP_NUM_THREADS to
--threads, and, if OpenBLAS's runtime CPU detection fell back to a generic core on a CPU with
AVX-512 / AVX2 (it reports "Prescott" on some virtual machines, ~3-4x slower sgemm), sets
OPENBLAS_CORETYPE=SkylakeX / Haswell; it then re-executes itself so the library starts with them.
Variables already set in the environment are left alone; --blas-coretype none disables the
override. The OpenBLAS core and thread count in use are printed and written to the JSON meta.

Usage examples:
  /usr/bin/python3 bench/pytorch_reference.py
  /usr/bin/python3 bench/pytorch_reference.py --workloads w1,w3 --repeats 5 --json /tmp/ref.json
  /usr/bin/python3 bench/pytorch_reference.py --accuracy --workloads w1 --epochs 25
"""

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import struct
import sys
import time



def _early_flag(name, default):
    """Value of --name VALUE / --name=VALUE in sys.argv (before argparse runs)."""
    for i, a in enumerate(sys.argv[1:], 1):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
AVX2_CORES = AVX512_CORES | {"haswell", "zen", "skylake"}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _openblas_core():
    """(corename, num_threads) of the OpenBLAS this process has loaded (or would load), or None."""
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("openblas")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode(), int(lib.openblas_get_num_threads())
    except (OSError, AttributeError):
        return None


def _setup_blas_env():
    """Pin BLAS/OpenMP threads to --threads and fix a failed OpenBLAS CPU detection, then re-exec."""
    if os.environ.get("TAPEGRAD_BENCH_REEXEC") == "1":
        return
    threads = _early_flag("--threads", "1")
    want = {"OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    coretype = _early_flag("--blas-coretype", "auto")
    if coretype.lower() not in ("auto", "none") and "OPENBLAS_CORETYPE" not in os.environ:
        want["OPENBLAS_CORETYPE"] = coretype
    elif coretype.lower() == "auto" and "OPENBLAS_CORETYPE" not in os.environ:
        info = _openblas_core()
        flags = _cpu_flags()
        if info is not None:
            core = info[0].lower()
            if "avx512f" in flags and core not in AVX512_CORES:
                want["OPENBLAS_CORETYPE"] = "SkylakeX"
            elif "avx2" in flags and "fma" in flags and core not in AVX2_CORES:
                want["OPENBLAS_CORETYPE"] = "Haswell"
    env = dict(os.environ)
    changed = False
    for k, v in want.items():
        if k not in env:
            env[k] = v
            changed = True
    if changed:
        env["TAPEGRAD_BENCH_REEXEC"] = "1"
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


if __name__ == "__main__":
    _setup_blas_env()

import numpy as np  # noqa: E402  (after the BLAS environment is set)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_WORKLOADS = ("w1", "w2", "w3", "w4")
SEED = 0
WARMUP_STEPS = 20


# --------------------------------------------------------------------------------------------
# Data


def _open_idx(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path):
    """Read an IDX file (plain or gzip-compressed) into a numpy array."""
    with _open_idx(path) as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type 0x{dtype_code:02x}")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} elements, found {arr.size}")
    return arr.reshape(dims)


def find_idx(data_dir, stem):
    """Locate e.g. train-images-idx3-ubyte, also as train-images.idx3-ubyte and with .gz."""
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for suffix in ("", ".gz"):
            p = os.path.join(data_dir, name + suffix)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(
        f"MNIST file '{stem}' (or .gz) not found in {data_dir}; run scripts/fetch-mnist.sh or pass --data DIR")


def load_mnist(data_dir):
    def images(stem):
        a = read_idx(find_idx(data_dir, stem))
        return torch.from_numpy(a.reshape(a.shape[0], -1).astype(np.float32) / np.float32(255.0))

    def labels(stem):
        return torch.from_numpy(read_idx(find_idx(data_dir, stem)).astype(np.int64))

    d = {
        "x_train": images("train-images-idx3-ubyte"),
        "y_train": labels("train-labels-idx1-ubyte"),
        "x_test": images("t10k-images-idx3-ubyte"),
        "y_test": labels("t10k-labels-idx1-ubyte"),
    }
    assert d["x_train"].shape == (60000, 784) and d["y_train"].shape == (60000,), d["x_train"].shape
    assert d["x_test"].shape == (10000, 784) and d["y_test"].shape == (10000,), d["x_test"].shape
    # Contiguous NCHW views for the CNN (same storage, no copy).
    d["x_train_img"] = d["x_train"].view(-1, 1, 28, 28)
    d["x_test_img"] = d["x_test"].view(-1, 1, 28, 28)
    return d


# --------------------------------------------------------------------------------------------
# Models and workloads


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


WORKLOADS = {
    "w1": dict(name="mlp", desc="MLP 784-128-64-10, batch 200, Adam 1e-3",
               model=lambda: mlp([784, 128, 64, 10]), batch=200, image=False,
               opt=lambda p: torch.optim.Adam(p, lr=1e-3)),
    "w2": dict(name="cnn", desc="CNN 2x(conv3x3 8ch+pool) FC128, batch 200, Adam 1e-3",
               model=CNN, batch=200, image=True,
               opt=lambda p: torch.optim.Adam(p, lr=1e-3)),
    "w3": dict(name="online", desc="MLP 784-300-100-100-10, batch 1, SGD 0.01",
               model=lambda: mlp([784, 300, 100, 100, 10]), batch=1, image=False,
               opt=lambda p: torch.optim.SGD(p, lr=0.01)),
    "w4": dict(name="mlp5-b10", desc="MLP 784-300-100-100-10, batch 10, SGD 0.1",
               model=lambda: mlp([784, 300, 100, 100, 10]), batch=10, image=False,
               opt=lambda p: torch.optim.SGD(p, lr=0.1)),
}


def make(wl):
    torch.manual_seed(SEED)
    model = wl["model"]()
    model.train()
    return model, wl["opt"](model.parameters())


def epoch_perm(epoch):
    g = torch.Generator()
    g.manual_seed(SEED + epoch)
    return torch.randperm(60000, generator=g)


def train_steps(model, opt, X, Y, perm, batch, start, nsteps):
    """Run nsteps mini-batch steps starting at batch index `start`; batches are X[perm[i:i+B]],
    or the contiguous slices X[i:i+B] when perm is None. Returns the sum of the batch losses."""
    loss_fn = nn.CrossEntropyLoss()
    total = 0.0
    n = X.shape[0]
    i = start * batch
    for _ in range(nsteps):
        if perm is None:
            xb = X[i:i + batch]
            yb = Y[i:i + batch]
        else:
            idx = perm[i:i + batch]
            xb = X[idx]
            yb = Y[idx]
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        i += batch
        if i >= n:
            i = 0
    return total


@torch.no_grad()
def evaluate(model, X, Y):
    model.eval()
    correct = 0
    for i in range(0, X.shape[0], 1000):
        correct += (model(X[i:i + 1000]).argmax(1) == Y[i:i + 1000]).sum().item()
    model.train()
    return correct / X.shape[0]


def run_epoch_workload(key, data, args):
    wl = WORKLOADS[key]
    X = data["x_train_img"] if wl["image"] else data["x_train"]
    Y = data["y_train"]
    B = wl["batch"]
    steps = (X.shape[0] + B - 1) // B

    # Untimed warm-up on a throw-away model.
    m, o = make(wl)
    train_steps(m, o, X, Y, epoch_perm(0), B, 0, WARMUP_STEPS)
    del m, o

    times, final_loss = [], None
    for r in range(args.repeats):
        model, opt = make(wl)
        elapsed = 0.0
        for e in range(args.epochs):
            perm = epoch_perm(e)                      # shuffle: outside the timed region
            Xe, Ye = X, Y
            if args.preshuffle:                       # permuted copy, contiguous slices in the loop
                Xe, Ye, perm = X[perm], Y[perm], None
            t0 = time.perf_counter()
            total = train_steps(model, opt, Xe, Ye, perm, B, 0, steps)
            elapsed += time.perf_counter() - t0
            final_loss = total / steps
        times.append(elapsed / args.epochs)
        print(f"  {key} repeat {r + 1}/{args.repeats}: {times[-1]:.3f} s/epoch, "
              f"mean train loss (last epoch) {final_loss:.4f}", flush=True)
    return {
        "seconds_per_epoch": min(times),
        "min": min(times),
        "median": statistics.median(times),
        "times": times,
        "final_loss": final_loss,
        "unit": "s/epoch",
        "batch": B,
        "epochs": args.epochs,
        "steps_per_epoch": steps,
    }


def run_w3(data, args):
    wl = WORKLOADS["w3"]
    X, Y, B = data["x_train"], data["y_train"], wl["batch"]
    times, final_loss = [], None
    for r in range(args.repeats):
        model, opt = make(wl)
        perm, Xe, Ye = epoch_perm(0), X, Y
        if args.preshuffle:
            Xe, Ye, perm = X[perm], Y[perm], None
        train_steps(model, opt, Xe, Ye, perm, B, 0, args.w3_warmup)       # untimed warm-up
        t0 = time.perf_counter()
        total = train_steps(model, opt, Xe, Ye, perm, B, args.w3_warmup, args.w3_steps)
        dt = time.perf_counter() - t0
        us = dt / args.w3_steps * 1e6
        final_loss = total / args.w3_steps
        times.append(us)
        print(f"  w3 repeat {r + 1}/{args.repeats}: {us:.1f} us/step "
              f"({us * 60000 / 1e6:.1f} s/epoch implied), mean loss over measured steps {final_loss:.4f}",
              flush=True)
    return {
        "us_per_step": min(times),
        "min": min(times),
        "median": statistics.median(times),
        "times": times,
        "seconds_per_epoch_implied": min(times) * 60000 / 1e6,
        "final_loss": final_loss,
        "unit": "us/step",
        "batch": B,
        "warmup_steps": args.w3_warmup,
        "steps": args.w3_steps,
    }


def run_accuracy(keys, data, args):
    results = {}
    for key in keys:
        wl = WORKLOADS[key]
        X = data["x_train_img"] if wl["image"] else data["x_train"]
        Xt = data["x_test_img"] if wl["image"] else data["x_test"]
        Y, Yt, B = data["y_train"], data["y_test"], wl["batch"]
        steps = (X.shape[0] + B - 1) // B
        model, opt = make(wl)
        print(f"{key} ({wl['desc']}): {args.epochs} epochs")
        print(f"  {'epoch':>5}  {'train loss':>10}  {'test acc':>8}  {'seconds':>7}")
        accs = []
        for e in range(args.epochs):
            perm = epoch_perm(e)
            t0 = time.perf_counter()
            total = train_steps(model, opt, X, Y, perm, B, 0, steps)
            dt = time.perf_counter() - t0
            acc = evaluate(model, Xt, Yt)
            accs.append(acc)
            print(f"  {e + 1:>5}  {total / steps:>10.4f}  {acc * 100:>7.2f}%  {dt:>7.2f}", flush=True)
        best = max(range(len(accs)), key=lambda i: accs[i])
        print(f"  best test accuracy {accs[best] * 100:.2f}% at epoch {best + 1}")
        results[key] = {"test_accuracy": accs, "best": accs[best], "best_epoch": best + 1}
    return results


# --------------------------------------------------------------------------------------------


def peak_rss_mb():
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(REPO, "data", "mnist"),
                    help="directory with the MNIST IDX files (default: <repo>/data/mnist)")
    ap.add_argument("--workloads", default=None,
                    help="comma-separated subset of w1,w2,w3,w4 (default: all; w1 with --accuracy)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per timed repeat (default 1)")
    ap.add_argument("--w3-steps", type=int, default=3000, help="timed W3 steps (default 3000)")
    ap.add_argument("--w3-warmup", type=int, default=200, help="untimed W3 warm-up steps (default 200)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; min and median reported (default 3)")
    ap.add_argument("--preshuffle", action="store_true",
                    help="permute the data set before timing and take contiguous slices (default: gather "
                         "each batch through the permutation inside the timed loop)")
    ap.add_argument("--blas-coretype", default="auto", metavar="auto|none|NAME",
                    help="OpenBLAS core override when OPENBLAS_CORETYPE is unset (default auto: only if "
                         "OpenBLAS's CPU detection fell back to a generic core)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    ap.add_argument("--accuracy", action="store_true",
                    help="train the selected workloads for --epochs and print test accuracy per epoch")
    args = ap.parse_args()

    keys = args.workloads.split(",") if args.workloads else (["w1"] if args.accuracy else list(ALL_WORKLOADS))
    keys = [k.strip().lower() for k in keys if k.strip()]
    for k in keys:
        if k not in WORKLOADS:
            ap.error(f"unknown workload '{k}' (choose from {','.join(ALL_WORKLOADS)})")
    if args.epochs < 1 or args.repeats < 1 or args.w3_steps < 1 or args.w3_warmup < 0:
        ap.error("--epochs, --repeats and --w3-steps must be >= 1, --w3-warmup >= 0")

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    blas = _openblas_core()
    blas_desc = f"OpenBLAS core {blas[0]}, {blas[1]} BLAS thread(s)" if blas else "BLAS: not OpenBLAS"
    t0 = time.perf_counter()
    try:
        data = load_mnist(args.data)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"PyTorch {torch.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
          f"{torch.get_num_threads()} thread(s), {blas_desc}"
          f"{' (OPENBLAS_CORETYPE=' + os.environ['OPENBLAS_CORETYPE'] + ')' if 'OPENBLAS_CORETYPE' in os.environ else ''}",
          flush=True)
    print(f"MNIST from {args.data} loaded in {time.perf_counter() - t0:.2f} s; batches "
          f"{'pre-shuffled, sliced' if args.preshuffle else 'gathered through a permutation'} in the timed loop",
          flush=True)

    meta = {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "epochs": args.epochs,
        "data": os.path.abspath(args.data),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "openblas_core": blas[0] if blas else None,
        "openblas_threads": blas[1] if blas else None,
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "batching": "preshuffled-slices" if args.preshuffle else "gather",
        "w3_steps": args.w3_steps,
        "w3_warmup": args.w3_warmup,
    }

    if args.accuracy:
        results = run_accuracy(keys, data, args)
        meta["mode"] = "accuracy"
    else:
        results = {}
        for k in keys:
            print(f"{k} {WORKLOADS[k]['name']}: {WORKLOADS[k]['desc']}", flush=True)
            results[k] = run_w3(data, args) if k == "w3" else run_epoch_workload(k, data, args)
        meta["mode"] = "timing"

        print()
        print(f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} thread(s), {blas_desc}, "
              f"min/median of {args.repeats} repeat(s)")
        print(f"{'workload':<14} {'unit':<9} {'min':>10} {'median':>10} {'s/epoch':>9} {'final loss':>11}")
        for k in keys:
            r = results[k]
            spe = r.get("seconds_per_epoch_implied", r.get("seconds_per_epoch"))
            fmt = "{:>10.1f}" if r["unit"] == "us/step" else "{:>10.3f}"
            print(f"{k + ' ' + WORKLOADS[k]['name']:<14} {r['unit']:<9} " + fmt.format(r["min"]) + " "
                  + fmt.format(r["median"]) + f" {spe:>9.2f} {r['final_loss']:>11.4f}")

    meta["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS: {meta['peak_rss_mb']:.0f} MB")

    if args.json:
        out = dict(results)
        out["meta"] = meta
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
