#!/usr/bin/python3
"""conv_torch.py: the PyTorch side of bench/conv_bench.py.

Times torch's conv2d forward and backward (autograd: dX and dW; the stem, a first
layer, only dW) on the convolution layer types of ResNet-20 on 28x28x1 Fashion-MNIST
(batch 128, no bias), and prints one JSON line: microseconds per call, the best of
--reps timed rounds of --iters calls each (other processes only add time), per layer
type and pass.

The thread count is held to N on every pool torch may use: torch.set_num_threads
(OpenMP, oneDNN) and OpenBLAS's own (openblas_set_num_threads; Debian's torch calls
it through the generic BLAS interface). The driver also pins the process to N CPUs.
The JSON says which kernels ran ("backend"): the names of the convolution ops seen
by the autograd profiler (aten::mkldnn_convolution when oneDNN runs the forward).

Usage: conv_torch.py --threads N [--reps 5] [--iters 20] [--batch 128] [--cpu-clock]
"""
import argparse
import ctypes
import json
import sys
import time

import torch
import torch.nn.functional as F

# name, cin, cout, kernel, stride, pad, input side, count in ResNet-20 (as in
# bench/conv_layers.c, which prints the same table for prunus)
LAYERS = [
    ("stem", 1, 16, 3, 1, 1, 28, 1),
    ("s1", 16, 16, 3, 1, 1, 28, 6),
    ("s2_down", 16, 32, 3, 2, 1, 28, 1),
    ("s2_proj", 16, 32, 1, 2, 0, 28, 1),
    ("s2", 32, 32, 3, 1, 1, 14, 5),
    ("s3_down", 32, 64, 3, 2, 1, 14, 1),
    ("s3_proj", 32, 64, 1, 2, 0, 14, 1),
    ("s3", 64, 64, 3, 1, 1, 7, 5),
    # channel-pruned variants (count 0: not in the network's sum)
    ("s1_p11", 11, 11, 3, 1, 1, 28, 0),
    ("s2d_p23", 11, 23, 3, 2, 1, 28, 0),
    ("s3_p45", 45, 45, 3, 1, 1, 7, 0),
]


def set_blas_threads(n):
    """OpenBLAS's thread count set to n; the count it then reports, or None."""
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_set_num_threads(ctypes.c_int(n))
            return int(lib.openblas_get_num_threads())
        except (OSError, AttributeError):
            continue
    return None


def conv_ops_seen(x, w, stride, pad, need_dx):
    """The aten op names of one forward + backward, as the profiler records them
    (the ones that name a convolution kernel)."""
    with torch.autograd.profiler.profile() as prof:
        y = F.conv2d(x, w, None, stride, pad)
        torch.autograd.grad(y, [x, w] if need_dx else [w], torch.ones_like(y))
    names = sorted({e.name for e in prof.function_events if "conv" in e.name})
    return names


CLOCK = time.perf_counter  # --cpu-clock: time.process_time


def best_us(fn, reps, iters):
    fn()  # warm-up: oneDNN builds its kernels on the first call of a shape
    fn()
    rounds = []
    for _ in range(reps):
        t0 = CLOCK()
        for _ in range(iters):
            fn()
        rounds.append((CLOCK() - t0) / iters * 1e6)
    return min(rounds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--only", default="", help="comma-separated layer names (default all)")
    ap.add_argument("--cpu-clock", action="store_true",
                    help="time by the process's CPU time (1 thread on a busy machine)")
    args = ap.parse_args()
    if args.threads < 1 or args.reps < 1 or args.iters < 1 or args.batch < 1:
        ap.error("--threads, --reps, --iters and --batch must be >= 1")
    if args.cpu_clock:
        global CLOCK
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    blas_threads = set_blas_threads(args.threads)
    torch.manual_seed(0)
    only = set(filter(None, args.only.split(",")))
    rows = []
    backends = set()
    for name, cin, cout, k, s, p, side, count in LAYERS:
        if only and name not in only:
            continue
        need_dx = name != "stem"
        x = torch.randn(args.batch, cin, side, side, requires_grad=need_dx)
        w = torch.randn(cout, cin, k, k, requires_grad=True)
        backends.update(conv_ops_seen(x, w, s, p, need_dx))
        with torch.no_grad():
            fwd = best_us(lambda: F.conv2d(x, w, None, s, p), args.reps, args.iters)
        y = F.conv2d(x, w, None, s, p)
        dy = torch.randn_like(y)
        inputs = [x, w] if need_dx else [w]
        bwd = best_us(lambda: torch.autograd.grad(y, inputs, dy, retain_graph=True),
                        args.reps, args.iters)
        rows.append({"name": name, "fwd_us": fwd, "bwd_us": bwd, "count": count})
    print(json.dumps({
        "framework": "torch", "torch_version": torch.__version__, "threads": args.threads,
        "torch_threads": torch.get_num_threads(), "blas_threads": blas_threads,
        "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        "backend": sorted(backends), "batch": args.batch, "layers": rows,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
