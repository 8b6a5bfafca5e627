#!/usr/bin/python3
"""sparse_torch.py: PyTorch (CPU) on the same pruned LeNet-300-100 weights that
bench/sparse_engines measured, side by side with prunus's engines, ratios from
one run. Reads sparse_engines' JSON (argv[1]); loads the exported safetensors
with struct + json + numpy (torch 1.13 has no safetensors module).

PyTorch options: dense nn.Linear; torch.nn.utils.prune (custom_from_mask: the
mask multiplied in by a forward pre-hook); torch.sparse CSR weights through
F.linear, and through addmm on the transposed input (y^T = W x^T + b).
Prints a markdown table and writes JSON to argv[2]."""
import json
import statistics
import struct
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import prune

warnings.filterwarnings("ignore")


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        b, e = t["data_offsets"]
        arr = np.frombuffer(data[base + b : base + e], dtype="<f4").reshape(t["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def median_us(fn, x, budget=0.25, min_runs=30, windows=3):
    """prunus_latency_us's method: after 3 warm-ups, the lowest median of three
    windows of budget/3 (at least min_runs calls each)."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        for _ in range(windows):
            times = []
            start = time.perf_counter()
            while len(times) < 5000:
                t0 = time.perf_counter()
                fn(x)
                t1 = time.perf_counter()
                times.append((t1 - t0) * 1e6)
                if len(times) >= min_runs and t1 - start >= budget / windows:
                    break
            best = min(best, statistics.median(times))
    return best


def build(tensors):
    names = sorted({k.split(".")[0] for k in tensors}, key=int)
    layers = [(tensors[f"{n}.weight"], tensors[f"{n}.bias"]) for n in names]
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        mods.append(lin)
        if i + 1 < len(layers):
            mods.append(torch.nn.ReLU())
    dense = torch.nn.Sequential(*mods).eval()
    masked = torch.nn.Sequential(*[m for m in build_masked(layers)]).eval()
    csr = [(w.to_sparse_csr(), b) for w, b in layers]

    def linear_csr(x):
        for i, (w, b) in enumerate(csr):
            x = F.linear(x, w, b)
            if i + 1 < len(csr):
                x = torch.relu(x)
        return x

    def addmm_csr(x):
        xt = x.t()
        for i, (w, b) in enumerate(csr):
            xt = torch.addmm(b[:, None], w, xt)
            if i + 1 < len(csr):
                xt = torch.relu(xt)
        return xt.t()

    return {"torch_dense": dense, "torch_prune_masked": masked,
            "torch_csr_linear": linear_csr, "torch_csr_addmm": addmm_csr}


def build_masked(layers):
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        prune.custom_from_mask(lin, "weight", (w != 0).float())
        mods.append(lin)
        if i + 1 < len(layers):
            mods.append(torch.nn.ReLU())
    return mods


def main():
    res = json.load(open(sys.argv[1]))
    out_rows = []
    batches = [1, 256]
    for tag, f in sorted(res["files"].items()):
        tensors = load_safetensors(f["pytorch"])
        fns = build(tensors)
        sparsity = int(tag) / 100
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for B in batches:
                x = torch.randn(B, 784)
                ref = fns["torch_dense"](x)
                for name, fn in fns.items():
                    with torch.no_grad():
                        assert torch.allclose(fn(x), ref, atol=1e-3), name
                    us = median_us(fn, x)
                    out_rows.append({"sparsity": sparsity, "engine": name, "batch": B,
                                     "threads": threads, "latency_us": us})
                    print(f"torch sparsity {sparsity:.2f} {name:20s} B={B:<4d} T={threads} {us:10.2f} us",
                          file=sys.stderr)
    json.dump({"torch_version": torch.__version__, "rows": out_rows}, open(sys.argv[2], "w"), indent=1)

    # side by side: prunus's best engine vs PyTorch's best option
    prunus = [r for r in res["rows"] if r["model"] == "magnitude"]
    print(f"\nPyTorch {torch.__version__} vs prunus, same pruned weights, latency in us (lowest of 3 window medians)\n")
    print("| sparsity | threads | batch | torch dense | torch prune (masked) | torch CSR F.linear | torch CSR addmm "
          "| prunus dense | prunus sparse | prunus auto | best prunus / best torch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for tag in sorted(res["files"]):
        s = int(tag) / 100
        for threads in (1, 2):
            for B in batches:
                t = {r["engine"]: r["latency_us"] for r in out_rows
                     if r["sparsity"] == s and r["threads"] == threads and r["batch"] == B}
                p = {r["engine"]: r["latency_us"] for r in prunus
                     if abs(r["sparsity"] - s) < 1e-9 and r["threads"] == threads and r["batch"] == B}
                best_t, best_p = min(t.values()), min(p.values())
                print(f"| {s:.2f} | {threads} | {B} | {t['torch_dense']:.1f} | {t['torch_prune_masked']:.1f} | "
                      f"{t['torch_csr_linear']:.1f} | {t['torch_csr_addmm']:.1f} | {p['dense']:.1f} | "
                      f"{p['sparse']:.1f} | {p['auto']:.1f} | **{best_t / best_p:.2f}x** |")


if __name__ == "__main__":
    main()
