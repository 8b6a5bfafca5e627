#!/usr/bin/python3
"""torch_train.py: the PyTorch side of bench/train_throughput.py.

Trains LeNet-300-100 or LeNet-5 on Fashion-MNIST with the same network, batch,
optimizer and normalisation as configs/lenet300.cfg / configs/lenet5.cfg, and
prints one JSON line with the training throughput (samples/s) of the last epoch.
Only the training loop is timed: data loading, normalisation and evaluation are
outside the clock, as in prunus's metrics.jsonl samples_per_second.

torch.set_num_threads(N) does not reach the BLAS here: Debian's torch calls
OpenBLAS through the generic BLAS interface, and OpenBLAS's own pool then uses every
core for each product (a "1-thread" run kept the second core 30% busy). So the
script also sets OpenBLAS's thread count to N (openblas_set_num_threads) and reports
it as blas_threads, for N threads to mean N cores on both sides.

Usage: torch_train.py --model lenet300|lenet5 --threads N [--epochs 2] [--batch 128]
"""
import argparse
import ctypes
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

DATA_DIR = "/usr/share/datasets/fashion-mnist"
VALIDATION = 5000  # the last 5000 training images are held out, as in the configs

# Per-model settings copied from configs/<model>.cfg (train.weight_decay differs).
MODELS = {
    "lenet300": {"weight_decay": 1e-4},
    "lenet5": {"weight_decay": 5e-4},
}


def read_idx(path):
    """An IDX file (gzip) as a numpy array of its declared shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_train_split():
    """Training images (N, 1, 28, 28) float32, normalised like prunus's "standard"
    (x/255 - mean)/std with mean/std over the training split, and labels (N,) int64."""
    images = read_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz"))
    images, labels = images[:-VALIDATION], labels[:-VALIDATION]
    x = images.astype(np.float32) / 255.0
    mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
    x = (x - mean) / std
    x = x.reshape(len(x), 1, 28, 28).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels.astype(np.int64))


def build(model):
    if model == "lenet300":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 300), nn.ReLU(),
            nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, 10),
        )
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def set_blas_threads(n):
    """Set the thread count of the OpenBLAS torch calls into; returns the count it
    then reports, or None when the loaded BLAS is not OpenBLAS."""
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)  # the copy torch already loaded, when names match
            lib.openblas_set_num_threads(ctypes.c_int(n))
            return int(lib.openblas_get_num_threads())
        except (OSError, AttributeError):
            continue
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2,
                    help="epochs to run; the last one is reported (the first is warm-up)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads < 1 or args.epochs < 1 or args.batch < 1:
        ap.error("--threads, --epochs and --batch must be >= 1")

    torch.set_num_threads(args.threads)
    blas_threads = set_blas_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y = load_train_split()
    n = len(x)
    net = build(args.model)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=MODELS[args.model]["weight_decay"])
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)

    epochs = []
    for epoch in range(1, args.epochs + 1):
        net.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)  # shuffled per epoch, inside the clock
        loss_sum = 0.0
        for start in range(0, n, args.batch):
            idx = order[start:start + args.batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()  # no per-step sync to Python floats
        seconds = time.perf_counter() - t0
        epochs.append({"epoch": epoch, "seconds": seconds, "samples_per_second": n / seconds,
                       "train_loss": float(loss_sum) * args.batch / n})

    last = epochs[-1]
    print(json.dumps({
        "framework": "torch", "torch_version": torch.__version__, "model": args.model,
        "threads": args.threads, "torch_threads": torch.get_num_threads(),
        "blas_threads": blas_threads, "batch": args.batch,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "epochs": epochs, "samples_per_second": last["samples_per_second"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
