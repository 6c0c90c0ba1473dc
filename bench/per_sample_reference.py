#!/usr/bin/env python3
"""PyTorch's side of bench/per_sample.cpp: the cost of per-sample gradients against a plain backward, on the first
`batch` MNIST training images and the 784-128-64-10 MLP (float32, one thread), the ways a PyTorch user gets them:

  plain      forward, cross-entropy, backward into .grad (zeroed first)
  hooks      BackPACK's way by hand: the layers' inputs and output gradients from one forward and one backward
             (hooks), then every sample's gradient as their outer products (einsum), (B, P) floats
  hooks-out  the same, the outer products written into buffers allocated once (mul(..., out=)): without the page
             faults of a fresh 56 MB block per call
  norms      the same sweep, only the per-sample squared norms: ||a_n||^2 ||dz_n||^2 (BackPACK's BatchL2Grad)
  vmap       torch.func / functorch: vmap(grad(loss of one sample)) over the batch, where this PyTorch has it
  loop       B separate backward sweeps of one sample each

Prints milliseconds per call (best thread CPU time of the runs, median wall time in parentheses) and each one's
ratio to plain, as bench/per_sample.cpp does for tapegrad.
Usage: per_sample_reference.py [repetitions=30] [batch=128]   (MNIST from $TAPEGRAD_MNIST_DIR or data/mnist)
"""
import copy
import gzip
import os
import statistics
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)


def read_idx(directory, name, header, count, width):
    """The first `count` records of `width` bytes of an IDX file (plain or gzip'd) after its `header` bytes."""
    for path in (os.path.join(directory, name), os.path.join(directory, name + ".gz")):
        if os.path.exists(path):
            with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
                raw = f.read()
            return np.frombuffer(raw, dtype=np.uint8, offset=header)[: count * width]
    sys.exit(f"per_sample_reference.py: no {name} in {directory}")


def load_images(directory, count):
    images = read_idx(directory, "train-images-idx3-ubyte", 16, count, 784)
    return torch.from_numpy(images.astype(np.float32).reshape(count, 784) / 255.0)


def load_labels(directory, count):
    return torch.from_numpy(read_idx(directory, "train-labels-idx1-ubyte", 8, count, 1).astype(np.int64))


def time_ms(repetitions, call):
    for _ in range(3):
        call()
    cpu, wall = [], []
    for _ in range(repetitions):
        start, cpu_start = time.perf_counter(), time.thread_time()
        call()
        cpu.append(1e3 * (time.thread_time() - cpu_start))
        wall.append(1e3 * (time.perf_counter() - start))
    return min(cpu), statistics.median(wall)


def main():
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    directory = os.environ.get("TAPEGRAD_MNIST_DIR", "data/mnist")
    x, y = load_images(directory, batch), load_labels(directory, batch)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10))
    hooked = copy.deepcopy(model)  # the hooks' copy: the others run without hooks (vmap refuses them)
    linears = [m for m in hooked if isinstance(m, torch.nn.Linear)]
    params, hooked_params = list(model.parameters()), list(hooked.parameters())
    loss_fn = torch.nn.functional.cross_entropy

    def plain():
        for p in params:
            p.grad = None
        loss_fn(model(x), y).backward()

    inputs, output_grads = {}, {}
    for layer in linears:
        layer.register_forward_hook(lambda m, i, o: inputs.__setitem__(m, i[0].detach()))
        layer.register_full_backward_hook(lambda m, gi, go: output_grads.__setitem__(m, go[0].detach()))

    def sweep():
        for p in hooked_params:
            p.grad = None
        loss_fn(hooked(x), y).backward()

    def hooks():
        sweep()
        rows = []
        for layer in linears:
            a, dz = inputs[layer], output_grads[layer]
            rows.append(torch.einsum("ni,nj->nij", dz, a).reshape(batch, -1))  # weight (out, in), row-major
            rows.append(dz)
        return torch.cat(rows, dim=1)  # (B, P)

    buffers = {layer: (torch.empty(batch, layer.out_features, layer.in_features), torch.empty(batch, layer.out_features))
               for layer in linears}

    def hooks_out():  # the same into buffers allocated once: PyTorch's allocator does not keep freed blocks
        sweep()
        for layer in linears:
            a, dz = inputs[layer], output_grads[layer]
            weight, bias = buffers[layer]
            torch.mul(dz.unsqueeze(2), a.unsqueeze(1), out=weight)
            bias.copy_(dz)
        return buffers

    def norms():
        sweep()
        total = torch.zeros(batch)
        for layer in linears:
            a, dz = inputs[layer], output_grads[layer]
            total += (a * a).sum(1) * (dz * dz).sum(1) + (dz * dz).sum(1)
        return total

    def loop():
        for n in range(batch):
            torch.autograd.grad(loss_fn(model(x[n : n + 1]), y[n : n + 1]), params)

    rows = [("plain", plain), ("hooks", hooks), ("hooks-out", hooks_out), ("norms", norms)]
    try:
        from torch.func import functional_call, grad, vmap  # PyTorch 2
    except ImportError:
        try:
            from functorch import grad, vmap  # PyTorch 1.13
            from torch.nn.utils.stateless import functional_call
        except ImportError:
            grad = None
    if grad is not None:
        named = {k: v.detach() for k, v in model.named_parameters()}

        def one(p, xn, yn):
            return loss_fn(functional_call(model, p, (xn.unsqueeze(0),)), yn.unsqueeze(0))

        per_sample = vmap(grad(one), in_dims=(None, 0, 0))
        rows.append(("vmap", lambda: per_sample(named, x, y)))
    rows.append(("loop", loop))

    got = hooks()
    check = torch.autograd.grad(loss_fn(model(x[:1]), y[:1]), params)
    expected = torch.cat([g.reshape(-1) for g in check]) / batch  # the mean's per-sample share
    assert torch.allclose(got[0], expected, atol=1e-6), "the hooks' per-sample gradient of sample 0 is wrong"

    print(f"PyTorch {torch.__version__}, 784-128-64-10 MLP, {sum(p.numel() for p in params)} parameters, batch {batch}, "
          f"float32, 1 thread")
    base = None
    for name, call in rows:
        cpu, wall = time_ms(repetitions if name != "loop" else max(3, repetitions // 10), call)
        base = base or cpu
        print(f"{name:10s} {cpu:6.2f} ms ({wall:7.2f} ms wall) {cpu / base:5.2f}x plain")


if __name__ == "__main__":
    main()
