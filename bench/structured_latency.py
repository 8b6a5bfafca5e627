#!/usr/bin/python3
"""structured_latency.py: does a channel-pruned (physically shrunk) ResNet-20 run as
much faster as its FLOPs say? Issue 13's target, one thread, batch 1 and 256:

    shrunk latency <= 1.25 x (dense latency x shrunk FLOPs / dense FLOPs)

Both checkpoints run through bench/infer_latency (the dense engine: batchnorm folded
into its conv, relus fused; a shrunk checkpoint is a smaller dense network) with
OpenBLAS held to one thread, alternately (dense, shrunk, then shrunk, dense, ...),
--reps times. Each run keeps the lowest mean over --rounds rounds of calls; the ratio
shrunk / dense is taken within each rep and the median over reps is reported, so load
from other processes that drifts between reps cancels. FLOPs are prunus_model_flops (2
x multiply-adds of the conv and dense layers; what `prunus run`'s flops_x divides).
Times are the process's CPU clock (the one to trust on a shared machine; --wall-clock
for the wall clock). The load average is printed before, after and with every rep.

Usage: structured_latency.py [--build-dir build-bench] [--dense CKPT --shrunk CKPT]
                             [--run DIR] [--reps 5] [--batches 1,256] [--json FILE]
--run DIR takes DIR/round-00.safetensors (the dense network a `prunus run` experiment
pruned) and the experiment's last round, and also checks the accuracy target from the
run's summary.json (>= 2x fewer FLOPs within 0.5 pt of round 0's test accuracy). With neither, a small ResNet-20 structured
run is made first (configs/resnet20-structured.cfg, --experiment, by default
weight-norm-r16: channel counts kept at multiples of 16; 1 epoch on 1,000 images, no
fine-tuning: latency depends on the channel counts, not on the accuracy). Exits 0 unless something
fails to run; a missed target is a printed MISS.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
from benchenv import cpu_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = 1.25  # shrunk latency / (dense latency x FLOPs ratio), at most


def load1():
    return os.getloadavg()[0]


def make_run(prunus, out, experiment):
    """A small structured run of ResNet-20; returns its experiment folder."""
    subprocess.run([prunus, "run", os.path.join(ROOT, "configs", "resnet20-structured.cfg"),
                    "--threads", "1", "--only", experiment, "-q", "-o", out,
                    "--set", "dataset.train_limit=1000", "--set", "dataset.validation=200",
                    "--set", "dataset.test_limit=500", "--set", "train.epochs=1",
                    "--set", "prune.retrain.epochs=0"], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(out, experiment)


def run_checkpoints(run_dir):
    rounds = sorted(glob.glob(os.path.join(run_dir, "round-[0-9][0-9].safetensors")))
    if len(rounds) < 2:
        sys.exit("structured_latency: %s has no round-NN.safetensors after round-00" % run_dir)
    return rounds[0], rounds[-1]


def accuracy_check(run_dir):
    """Issue 13's accuracy target for a `prunus run` experiment folder, from the run's
    summary.json: >= 2x fewer FLOPs within 0.5 pt of round 0's test accuracy. Prints
    one line; None when the folder has no summary to read."""
    exp = os.path.basename(os.path.normpath(run_dir))
    path = os.path.join(os.path.dirname(os.path.normpath(run_dir)), "summary.json")
    try:
        with open(path) as f:
            rounds = next(e["rounds"] for e in json.load(f)["experiments"] if e["name"] == exp)
    except (OSError, ValueError, KeyError, StopIteration):
        print("accuracy: no summary of experiment %s in %s" % (exp, path))
        return None
    first, last = rounds[0], rounds[-1]
    loss = 100 * (first["test_accuracy"] - last["test_accuracy"])
    fewer = first["flops"] / last["flops"]
    ok = fewer >= 2.0 and loss <= 0.5
    print("accuracy (%s, round %d): dense %.4f, shrunk %.4f, %.2f pt lost at %.2fx fewer "
          "FLOPs; target <= 0.5 pt at >= 2x: %s"
          % (exp, last["round"], first["test_accuracy"], last["test_accuracy"], loss, fewer,
             "PASS" if ok else "MISS"))
    return {"dense": first["test_accuracy"], "shrunk": last["test_accuracy"],
            "loss_pt": loss, "flops_fewer": fewer, "verdict": "PASS" if ok else "MISS"}


def measure(binary, ckpt, args, env):
    out = subprocess.run([binary, ckpt, "--batches", args.batches, "--seconds", str(args.seconds),
                          "--rounds", str(args.rounds)], check=True, capture_output=True,
                         text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--dense", help="dense checkpoint (with --shrunk)")
    ap.add_argument("--shrunk", help="shrunk checkpoint (with --dense)")
    ap.add_argument("--run", help="a `prunus run` experiment folder (round-NN.safetensors)")
    ap.add_argument("--experiment", default="weight-norm-r16",
                    help="the experiment of configs/resnet20-structured.cfg to run when given "
                         "no checkpoints")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--wall-clock", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if bool(args.dense) != bool(args.shrunk):
        ap.error("--dense and --shrunk go together")
    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT, args.build_dir)
    binary = os.path.join(build, "bench", "infer_latency")
    tmp = tempfile.TemporaryDirectory()
    if args.dense:
        dense, shrunk = args.dense, args.shrunk
    else:
        run_dir = args.run or make_run(os.path.join(build, "cli", "prunus"),
                                       os.path.join(tmp.name, "run"), args.experiment)
        dense, shrunk = run_checkpoints(run_dir)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    clock = "wall_us" if args.wall_clock else "cpu_us"
    batches = args.batches.split(",")
    load_before = load1()
    reps = []
    for rep in range(args.reps):
        order = ("dense", "shrunk") if rep % 2 == 0 else ("shrunk", "dense")
        res = {}
        for side in order:
            res[side] = measure(binary, dense if side == "dense" else shrunk, args, env)
        res["load"] = load1()
        reps.append(res)
        print("rep %d: %s; load average %.2f" % (rep + 1, ", ".join(
            "b%s shrunk/dense %.3f" % (B, res["shrunk"]["latency"][B][clock] /
                                       res["dense"]["latency"][B][clock]) for B in batches),
            res["load"]), file=sys.stderr)
    d0, s0 = reps[0]["dense"], reps[0]["shrunk"]
    flops_ratio = s0["flops"] / d0["flops"]
    print("ResNet-20 structured latency, dense engine, 1 thread, %s; %s clock; %d reps "
          "(median of per-rep ratios); load average %.2f -> %.2f"
          % (cpu_model(), "wall" if args.wall_clock else "CPU", args.reps, load_before, load1()))
    print("dense:  %s\n        %d FLOPs/sample, conv channels %s" % (dense, d0["flops"],
                                                                   d0["channels"]))
    print("shrunk: %s\n        %d FLOPs/sample, conv channels %s" % (shrunk, s0["flops"],
                                                                   s0["channels"]))
    print("FLOPs ratio shrunk/dense %.3f (%.2fx fewer); target: latency ratio <= %.2f x %.3f = %.3f"
          % (flops_ratio, 1 / flops_ratio, TARGET, flops_ratio, TARGET * flops_ratio))
    print("%6s %12s %12s %14s %12s %8s" % ("batch", "dense_us", "shrunk_us", "latency_ratio",
                                         "vs_flops", "target"))
    summary = {}
    for B in batches:
        ratios = [r["shrunk"]["latency"][B][clock] / r["dense"]["latency"][B][clock] for r in reps]
        ratio = statistics.median(ratios)
        du = statistics.median(r["dense"]["latency"][B][clock] for r in reps)
        su = statistics.median(r["shrunk"]["latency"][B][clock] for r in reps)
        verdict = "PASS" if ratio <= TARGET * flops_ratio else "MISS"
        print("%6s %12.1f %12.1f %14.3f %11.2fx %8s" % (B, du, su, ratio, ratio / flops_ratio,
                                                       verdict))
        summary[B] = {"dense_us": du, "shrunk_us": su, "latency_ratio": ratio,
                      "ratios": ratios, "vs_flops": ratio / flops_ratio, "verdict": verdict}
    print("(vs_flops = latency ratio / FLOPs ratio: 1.00 would be time exactly proportional to "
          "FLOPs; the target is <= %.2f)" % TARGET)
    accuracy = accuracy_check(args.run) if args.run and not args.dense else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "clock": clock, "dense": dense, "shrunk": shrunk,
                       "flops": [d0["flops"], s0["flops"]], "flops_ratio": flops_ratio,
                       "channels": [d0["channels"], s0["channels"]], "load_before": load_before,
                       "reps": reps, "batches": summary, "accuracy": accuracy}, f, indent=1)


if __name__ == "__main__":
    main()
