#!/usr/bin/python3
"""resnet_torch.py: the PyTorch peer of configs/resnet20.cfg (and resnet8.cfg).

Builds the same graph as the config (conv3x3(16)-BN-ReLU stem, 3 stages of basic
blocks at 16/32/64 channels, the first block of stages 2 and 3 a stride-2 block with
a 1x1 stride-2 conv + BN projection shortcut, global average pooling, dense 10) and
trains it with the config's recipe, each part matching prunus:
  - data: the first 55000 training images train, the last 5000 validate; "standard"
    normalisation, (x/255 - mean)/std with one mean/std over the training split;
    a fresh shuffle per epoch; the last, short batch is kept;
  - init "kaiming": every conv and dense weight ~ N(0, 2/fan_in), biases 0, BN
    gamma 1, beta 0, running stats 0/1, BN momentum 0.1, eps 1e-5;
  - SGD with momentum, optional Nesterov, weight decay on every parameter; the
    learning rate set per step, lr(pos) = lr * (1 + cos(pi * pos / epochs)) / 2 with
    pos = epoch - 1 + step / steps (prunus_lr_at's cosine);
  - no augmentation.
Prints one JSON line per epoch (train loss/accuracy, validation accuracy, samples/s
of the training loop alone) and, with --test, a final line with the test accuracy.
Threads: torch.set_num_threads(N) plus OpenBLAS's own pool set to N (see
torch_train.py), so N threads means N cores.

Usage: resnet_torch.py [--depth 20|8] [--threads N] [--epochs 15] [--batch 128]
                       [--lr 0.1] [--momentum 0.9] [--nesterov] [--weight-decay 5e-4]
                       [--steps S] [--test]
"""
import argparse
import ctypes
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

DATA_DIR = "/usr/share/datasets/fashion-mnist"
VALIDATION = 5000


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load():
    """(train, val, test) as (x, y) tensor pairs, normalised with the training split's
    mean and std (the validation images are not part of it)."""
    tx = read_idx(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
    ty = read_idx(os.path.join(DATA_DIR, "train-labels-idx1-ubyte.gz"))
    ex = read_idx(os.path.join(DATA_DIR, "t10k-images-idx3-ubyte.gz"))
    ey = read_idx(os.path.join(DATA_DIR, "t10k-labels-idx1-ubyte.gz"))
    xtr = tx[:-VALIDATION].astype(np.float32) / 255.0
    mean, std = float(xtr.mean(dtype=np.float64)), float(xtr.std(dtype=np.float64))

    def prep(x, y):
        x = ((x.astype(np.float32) / 255.0 - mean) / std).reshape(len(x), 1, 28, 28)
        return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                torch.from_numpy(y.astype(np.int64)))

    return (prep(tx[:-VALIDATION], ty[:-VALIDATION]), prep(tx[-VALIDATION:], ty[-VALIDATION:]),
            prep(ex, ey))


class Block(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is the
    identity, or conv1x1 stride 2 + BN when the block downsamples."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nn.Module):
    def __init__(self, blocks_per_stage):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for b in range(blocks_per_stage):
                layers.append(Block(cin, cout, 2 if (stage > 0 and b == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def kaiming_(net):
    for mod in net.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            fan_in = mod.weight[0].numel()
            nn.init.normal_(mod.weight, 0.0, math.sqrt(2.0 / fan_in))
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)


def set_blas_threads(n):
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_set_num_threads(ctypes.c_int(n))
            return int(lib.openblas_get_num_threads())
        except (OSError, AttributeError):
            continue
    return None


@torch.no_grad()
def evaluate(net, x, y, batch):
    net.eval()
    correct = 0
    for s in range(0, len(x), batch):
        correct += int((net(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum())
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, choices=(8, 20), default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=0,
                    help="time this many training steps per epoch only (0: the whole epoch)")
    ap.add_argument("--test", action="store_true", help="evaluate on the test set at the end")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads < 1 or args.epochs < 1 or args.batch < 1:
        ap.error("--threads, --epochs and --batch must be >= 1")

    torch.set_num_threads(args.threads)
    blas_threads = set_blas_threads(args.threads)
    torch.manual_seed(args.seed)
    (x, y), (vx, vy), (ex, ey) = load()
    n = len(x)
    net = ResNet(3 if args.depth == 20 else 1)
    kaiming_(net)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                          nesterov=args.nesterov, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)
    steps = (n + args.batch - 1) // args.batch
    run_steps = min(steps, args.steps) if args.steps > 0 else steps
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for s in range(run_steps):
            pos = epoch - 1 + s / steps
            for group in opt.param_groups:
                group["lr"] = args.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, pos / args.epochs)))
            idx = order[s * args.batch:(s + 1) * args.batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            out = net(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.detach().argmax(1) == yb).sum()
            seen += len(idx)
        seconds = time.perf_counter() - t0
        rec = {"epoch": epoch, "seconds": seconds, "samples_per_second": seen / seconds,
               "train_loss": float(loss_sum) / seen, "train_accuracy": int(correct) / seen,
               "lr": opt.param_groups[0]["lr"]}
        if args.steps == 0:
            rec["val_accuracy"] = evaluate(net, vx, vy, args.batch)
        print(json.dumps(rec), flush=True)
    final = {"framework": "torch", "torch_version": torch.__version__, "depth": args.depth,
             "threads": args.threads, "torch_threads": torch.get_num_threads(),
             "blas_threads": blas_threads, "batch": args.batch,
             "samples_per_second": rec["samples_per_second"]}
    if args.test:
        final["test_accuracy"] = evaluate(net, ex, ey, args.batch)
    print(json.dumps(final), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
