#!/usr/bin/python3
"""infer_resnet.py: ResNet-20 inference latency, prunus against PyTorch, one thread.

prunus's side is bench/infer_latency (the dense engine: every batchnorm folded into its
conv, relus fused, three activation buffers); PyTorch's is the same network in eval
mode under torch.inference_mode(), with its state_dict loaded (strict) from the same
checkpoint, and again with torch.fx's conv-batchnorm fusion ("torch_fused"). Both sides
are held to one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1), OpenBLAS's own
count) and run alternately, --reps times each; per batch size the lowest time counts.
Times come from the wall clock and from the process's CPU clock; on a machine other
processes keep busy the CPU clock is the one to trust (the ratios use it unless
--wall-clock). Prints the table and the ratios (PyTorch time / prunus time: above 1,
prunus is faster) and the load average before and after.

Usage: infer_resnet.py [--build-dir build-bench] [--checkpoint CKPT] [--reps 2]
                       [--seconds 1.0] [--rounds 5] [--batches 1,256] [--json FILE]
Without --checkpoint, ResNet-20 is trained for one epoch on 1,024 images first (the
latency of dense inference does not depend on the weights).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from benchenv import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# PyTorch side (run in its own process: the thread settings must precede the import)

def read_safetensors(path):
    """{name: (shape, bytes)} of a safetensors file's float32 tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["shape"], data[a:b])
    return out


def torch_side(args):
    import ctypes
    import torch
    import torch.nn as nn

    torch.set_num_threads(1)
    for lib in ("libblas.so.3", "libopenblas.so.0"):
        try:
            ctypes.CDLL(lib).openblas_set_num_threads(ctypes.c_int(1))
            break
        except (OSError, AttributeError):
            continue

    class Block(nn.Module):
        """A basic block named as configs/resnet-blocks.cfg names its layers."""

        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = stride != 1 or cin != cout
            if self.down:
                self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
                self.shortcut_bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            s = self.shortcut_bn(self.shortcut(x)) if self.down else x
            return torch.relu(y + s)

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            cin = 16
            for stage, cout in ((1, 16), (2, 32), (3, 64)):
                blocks = []
                for i in range(3):
                    blocks.append(Block(cin, cout, 2 if (i == 0 and stage > 1) else 1))
                    cin = cout
                setattr(self, "layer%d" % stage, nn.Sequential(*blocks))
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean((2, 3)))

    m = ResNet20().eval()
    tensors = read_safetensors(args.checkpoint)
    state = {}
    for name, (shape, raw) in tensors.items():
        if name.endswith(".mask"):
            continue
        state[name] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
    for k, v in m.state_dict().items():  # num_batches_tracked: not in prunus checkpoints
        if k.endswith("num_batches_tracked"):
            state[k] = v
    m.load_state_dict(state, strict=True)
    variants = [("torch", m)]
    from torch.fx.experimental.optimization import fuse
    variants.append(("torch_fused", fuse(m)))
    batches = [int(b) for b in args.batches.split(",")]
    result = {"threads": torch.get_num_threads(), "version": torch.__version__}
    with torch.inference_mode():
        x = torch.randn(max(batches), 1, 28, 28)
        y0 = variants[0][1](x[:4])
        result["fused_max_diff"] = float((variants[1][1](x[:4]) - y0).abs().max())
        for name, model in variants:
            lat = {}
            for B in batches:
                xb = x[:B].contiguous()
                for _ in range(3):
                    model(xb)
                t0 = time.perf_counter()
                model(xb)
                one = time.perf_counter() - t0
                calls = max(1, min(100000, int(args.seconds / max(one, 1e-6) / args.rounds)))
                wall, cpu = float("inf"), float("inf")
                for _ in range(args.rounds):
                    w0, c0 = time.perf_counter(), time.process_time()
                    for _ in range(calls):
                        model(xb)
                    wall = min(wall, (time.perf_counter() - w0) / calls * 1e6)
                    cpu = min(cpu, (time.process_time() - c0) / calls * 1e6)
                lat[str(B)] = {"wall_us": wall, "cpu_us": cpu, "calls": calls}
            result[name] = lat
    print(json.dumps(result))


# ---------------------------------------------------------------------------
# driver


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--checkpoint")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--wall-clock", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_side:
        torch_side(args)
        return
    build = os.path.join(ROOT, args.build_dir) if not os.path.isabs(args.build_dir) else args.build_dir
    tmp = tempfile.TemporaryDirectory()
    if not args.checkpoint:
        run = os.path.join(tmp.name, "r20")
        subprocess.run([os.path.join(build, "cli", "prunus"), "train",
                        os.path.join(ROOT, "configs", "resnet20.cfg"), "-o", run, "--threads", "1",
                        "-q", "--set", "train.epochs=1", "--set", "dataset.train_limit=1024",
                        "--set", "dataset.validation=256"], check=True, stdout=subprocess.DEVNULL)
        args.checkpoint = os.path.join(run, "model.safetensors")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    load_before = os.getloadavg()
    sides = {}
    for rep in range(args.reps):
        p = run_json([os.path.join(build, "bench", "infer_latency"), args.checkpoint,
                      "--batches", args.batches, "--seconds", str(args.seconds),
                      "--rounds", str(args.rounds)], env)
        t = run_json(["/usr/bin/python3", os.path.abspath(__file__), "--torch-side",
                      "--checkpoint", args.checkpoint, "--batches", args.batches,
                      "--seconds", str(args.seconds), "--rounds", str(args.rounds)], env)
        for name, lat in (("prunus", p["latency"]), ("torch", t["torch"]),
                          ("torch_fused", t["torch_fused"])):
            best = sides.setdefault(name, {})
            for B, v in lat.items():
                cur = best.setdefault(B, {"wall_us": float("inf"), "cpu_us": float("inf")})
                cur["wall_us"] = min(cur["wall_us"], v["wall_us"])
                cur["cpu_us"] = min(cur["cpu_us"], v["cpu_us"])
        print("rep %d done: load average %.2f" % (rep + 1, os.getloadavg()[0]), file=sys.stderr)
    load_after = os.getloadavg()
    clock = "wall_us" if args.wall_clock else "cpu_us"
    print("ResNet-20 inference, 1 thread, %s; %s clock; torch %s; load average %.2f -> %.2f"
          % (cpu_model(), "wall" if args.wall_clock else "CPU", t["version"], load_before[0],
             load_after[0]))
    print("prunus: dense engine, %d activation floats per sample, %d weight bytes"
          % (p["activation_floats"], p["weight_bytes"]))
    print("torch_fused vs torch logits: max difference %.2e" % t["fused_max_diff"])
    print("%6s %14s %14s %14s %12s %14s" % ("batch", "prunus_us", "torch_us", "torch_fused_us",
                                           "torch/prunus", "fused/prunus"))
    ratios = {}
    for B in args.batches.split(","):
        pu, tu, fu = (sides[s][B][clock] for s in ("prunus", "torch", "torch_fused"))
        ratios[B] = {"torch": tu / pu, "torch_fused": fu / pu}
        print("%6s %14.1f %14.1f %14.1f %11.2fx %13.2fx" % (B, pu, tu, fu, tu / pu, fu / pu))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "clock": clock, "load_before": load_before,
                       "load_after": load_after, "sides": sides, "ratios": ratios,
                       "prunus": {k: p[k] for k in ("activation_floats", "weight_bytes")}},
                      f, indent=1)


if __name__ == "__main__":
    main()
