#!/usr/bin/python3
"""conv_bench.py: prunus's convolution kernels against PyTorch's (oneDNN) on the conv
layer types of ResNet-20 on 28x28x1 Fashion-MNIST, batch 128, no bias.

Runs bench/conv_layers (prunus) and bench/conv_torch.py (PyTorch) alternately, each
pinned to the same N CPUs (taskset) and told to use N threads, --reps times per thread
count; per layer and pass it keeps the best (lowest) time over the reps, since other
processes on a shared machine only ever add time. Prints per layer type: prunus and
torch microseconds for forward, backward (dX and dW; the stem only dW) and both, the
ratio torch/prunus (above 1: prunus is faster), prunus's GFLOP/s and its share of the
FMA peak for the forward, the weight gradient (dW) and the input gradient (dX: the
backward's time less a dW-only backward's); then the sum over ResNet-20's conv layers
(each type times its count). GFLOP/s count a direct convolution's multiply-adds (2 per
MAC); Winograd's kernels do fewer, so theirs can exceed the peak.

The FMA peak is measured, not looked up: conv_layers runs a loop of independent
512-bit (and 256-bit) FMAs on every thread, timed by the thread's CPU time (so other
processes do not lower it); the best rate over all runs is the peak.
The nominal peak from /proc/cpuinfo's MHz x 2 FMA units x 16 lanes x 2 flops is
printed next to it: it holds on Intel cores with two 512-bit FMA units; AMD Zen 4
issues one 512-bit (two 256-bit) FMA per cycle, so there the loop reads half of it.

Usage: conv_bench.py [--build-dir build] [--threads 1,2] [--reps 3] [--isa avx2]
                     [--cpu-clock --threads 1] [--json FILE]
"""
import argparse
import json
import os
import subprocess
import sys
from benchenv import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.30  # torch / prunus time, forward + backward over the network's conv layers
OTHER_LOAD_LIMIT = 0.10  # share of the pinned CPUs used by other processes


class BenchError(Exception):
    pass


def cpu_times():
    """(busy, total) jiffies per CPU from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = [int(v) for v in parts[1:]]
                idle = vals[3] + vals[4]
                out[int(parts[0][3:])] = (sum(vals) - idle, sum(vals))
    return out


def run_pinned(cmd, cpus):
    """Runs cmd on the given CPUs; returns (stdout, share of those CPUs that other
    processes used meanwhile)."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS"):
        env.pop(k, None)
    env["OMP_NUM_THREADS"] = str(len(cpus))
    env["OPENBLAS_NUM_THREADS"] = str(len(cpus))
    before = cpu_times()
    proc = subprocess.Popen(["taskset", "-c", ",".join(map(str, cpus))] + cmd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    after = cpu_times()
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"{' '.join(cmd)} failed:\n{err.strip()}")
    busy = sum(after[c][0] - before[c][0] for c in cpus)
    total = sum(after[c][1] - before[c][1] for c in cpus)
    hz = os.sysconf("SC_CLK_TCK")
    own = (usage.ru_utime + usage.ru_stime) * hz
    other = max(0.0, (busy - own) / total) if total else 0.0
    try:
        return json.loads(out.strip().splitlines()[-1]), other
    except (ValueError, IndexError) as e:
        raise BenchError(f"{' '.join(cmd)} printed no JSON ({e}): {out!r}")


def nominal_peak_gflops():
    """MHz from /proc/cpuinfo x 2 FMA units x 16 lanes x 2 flops, per core."""
    with open("/proc/cpuinfo") as f:
        mhz = [float(l.split(":")[1]) for l in f if l.startswith("cpu MHz")]
    return (max(mhz) if mhz else 0.0) * 1e-3 * 2 * 16 * 2, max(mhz) if mhz else 0.0


def best_layers(runs):
    """Per layer name, the lowest fwd_us and bwd_us over the runs."""
    best = {}
    for r in runs:
        for row in r["layers"]:
            b = best.setdefault(row["name"], dict(row))
            b["fwd_us"] = min(b["fwd_us"], row["fwd_us"])
            b["bwd_us"] = min(b["bwd_us"], row["bwd_us"])
            if "bwd_w_us" in row:
                b["bwd_w_us"] = min(b["bwd_w_us"], row["bwd_w_us"])
    return best


def measure(args, threads):
    cpus = list(range(threads))
    prunus_cmd = [os.path.join(args.build_dir, "bench", "conv_layers"), "--threads",
                  str(threads), "--reps", str(args.rounds), "--iters", str(args.iters)]
    torch_cmd = [sys.executable, os.path.join(ROOT, "bench", "conv_torch.py"), "--threads",
                 str(threads), "--reps", str(args.rounds), "--iters", str(args.iters)]
    if args.isa:
        prunus_cmd += ["--isa", args.isa]
    if args.cpu_clock:
        prunus_cmd += ["--cpu-clock"]
        torch_cmd += ["--cpu-clock"]
    if args.only:
        prunus_cmd += ["--only", args.only]
        torch_cmd += ["--only", args.only]
    p_runs, t_runs, loads = [], [], []
    for rep in range(args.reps):
        p, lp = run_pinned(prunus_cmd, cpus)
        t, lt = run_pinned(torch_cmd, cpus)
        if t["torch_threads"] != threads or t["blas_threads"] not in (None, threads):
            raise BenchError(f"torch ran with {t['torch_threads']} threads and BLAS "
                             f"{t['blas_threads']}, not {threads}")
        if not t["mkldnn"] or "aten::mkldnn_convolution" not in t["backend"]:
            raise BenchError(f"torch's convolutions did not run on oneDNN: {t['backend']}")
        p_runs.append(p)
        t_runs.append(t)
        loads.append(max(lp, lt))
        print(f"  threads={threads} rep {rep + 1}/{args.reps}: other processes used "
              f"{100 * lp:.0f}% / {100 * lt:.0f}% of the CPUs (prunus / torch)",
              file=sys.stderr)
    return p_runs, t_runs, loads


def report(threads, p_runs, t_runs, loads, nominal):
    peak = max(max(r["fma_peak_gflops"].values()) for r in p_runs)
    p, t = best_layers(p_runs), best_layers(t_runs)
    lines = [f"threads={threads}: Winograd kernels {p_runs[0]['wino_isa']}; FMA peak measured "
             f"{peak:.1f} GFLOP/s ({peak / threads:.1f} per core; nominal {nominal:.1f} per core); "
             f"max other load {100 * max(loads):.0f}%"
             + ("  (UNTRUSTWORTHY: other processes were busy)"
                if max(loads) > OTHER_LOAD_LIMIT else "")]
    hdr = (f"{'layer':<8} {'n':>2} {'path':<8} {'fwd us':>7} {'torch':>7} {'x':>5} "
           f"{'bwd us':>7} {'torch':>7} {'x':>5} {'sum x':>5} | {'fwd GF/s %pk':>12} "
           f"{'dW GF/s %pk':>12} {'dX GF/s %pk':>12}")
    lines.append(hdr)
    tot_p = tot_t = tot_pf = tot_tf = 0.0
    rows = []
    for name, pr in p.items():
        tr = t[name]
        fx, bx = tr["fwd_us"] / pr["fwd_us"], tr["bwd_us"] / pr["bwd_us"]
        sx = (tr["fwd_us"] + tr["bwd_us"]) / (pr["fwd_us"] + pr["bwd_us"])
        fg, bg = pr["fwd_flops"] / pr["fwd_us"] * 1e-3, pr["bwd_flops"] / pr["bwd_us"] * 1e-3
        wg = pr["fwd_flops"] / pr["bwd_w_us"] * 1e-3
        dx_us = pr["bwd_us"] - pr["bwd_w_us"]
        xg = pr["fwd_flops"] / dx_us * 1e-3 if pr["bwd_flops"] > pr["fwd_flops"] and dx_us > 0 \
            else None

        def gf(v):
            return f"{v:>6.1f} {100 * v / peak:>4.0f}%" if v is not None else f"{'-':>12}"

        lines.append(f"{name:<8} {pr['count']:>2} {pr['path']:<8} {pr['fwd_us']:>7.0f} "
                     f"{tr['fwd_us']:>7.0f} {fx:>5.2f} {pr['bwd_us']:>7.0f} {tr['bwd_us']:>7.0f} "
                     f"{bx:>5.2f} {sx:>5.2f} | {gf(fg)} {gf(wg)} {gf(xg)}")
        n = pr["count"]
        tot_p += n * (pr["fwd_us"] + pr["bwd_us"])
        tot_t += n * (tr["fwd_us"] + tr["bwd_us"])
        tot_pf += n * pr["fwd_us"]
        tot_tf += n * tr["fwd_us"]
        flops = n * (pr["fwd_flops"] + pr["bwd_flops"])
        rows.append({"name": name, "count": n, "path": pr["path"], "prunus_fwd_us": pr["fwd_us"],
                     "prunus_bwd_us": pr["bwd_us"], "torch_fwd_us": tr["fwd_us"],
                     "torch_bwd_us": tr["bwd_us"], "ratio": sx, "fwd_gflops": fg,
                     "bwd_gflops": bg, "flops": flops})
    flops = sum(r["flops"] for r in rows)
    ratio = tot_t / tot_p
    gf = flops / tot_p * 1e-3
    lines.append(f"network: prunus {tot_p / 1e3:.1f} ms, torch {tot_t / 1e3:.1f} ms per batch "
                 f"(forward {tot_pf / 1e3:.1f} vs {tot_tf / 1e3:.1f}); torch/prunus {ratio:.2f} "
                 f"(target {TARGET:.2f}: {'PASS' if ratio >= TARGET else 'MISS'}); prunus "
                 f"{gf:.1f} GFLOP/s = {100 * gf / peak:.0f}% of the FMA peak")
    return "\n".join(lines), {"threads": threads, "fma_peak_gflops": peak,
                              "max_other_load": max(loads), "layers": rows,
                              "prunus_ms": tot_p / 1e3, "torch_ms": tot_t / 1e3, "ratio": ratio}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3, help="alternating runs per side")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds inside each run")
    ap.add_argument("--iters", type=int, default=10, help="calls per round")
    ap.add_argument("--only", default="", help="comma-separated layer names (default all)")
    ap.add_argument("--isa", choices=["avx512", "avx2"],
                    help="widest instruction set prunus's Winograd kernels may use")
    ap.add_argument("--cpu-clock", action="store_true",
                    help="time both sides by process CPU time (1 thread only: a busy machine's "
                         "other processes then cost no time, though they still share caches)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    exe = os.path.join(args.build_dir, "bench", "conv_layers")
    if not os.access(exe, os.X_OK):
        print(f"conv_bench: {exe} is missing; build first: meson setup build && ninja -C build",
              file=sys.stderr)
        return 2
    if args.cpu_clock and args.threads != "1":
        print("conv_bench: --cpu-clock needs --threads 1 (spinning threads count as CPU time)",
              file=sys.stderr)
        return 2
    nominal, mhz = nominal_peak_gflops()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs, {mhz:.0f} MHz (/proc/cpuinfo)")
    results = []
    try:
        for threads in [int(s) for s in args.threads.split(",")]:
            p_runs, t_runs, loads = measure(args, threads)
            text, res = report(threads, p_runs, t_runs, loads, nominal)
            print(text)
            results.append(res)
    except BenchError as e:
        print(f"conv_bench: {e}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "mhz": mhz, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
