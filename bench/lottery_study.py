#!/usr/bin/python3
"""lottery_study.py: the whole lottery-ticket study, prunus against PyTorch 1.13, end to end.

The study (configs/lottery-study.cfg; its PyTorch side, bench/lottery_torch.py, is the
one PyTorch users run with torch.nn.utils.prune): LeNet-300-100 on Fashion-MNIST,
pretrained 10 epochs, then three experiments of 10 rounds of 20% global magnitude
pruning: IMP (1 epoch of fine-tuning), LTH (rewind to θ0, 3 epochs) and the random
re-init control (LTH's masks, 3 epochs). Each rep runs both sides one after the other
(the order alternates between reps), each as a fresh process with a fresh run folder
(prunus pretrains in every rep: nothing comes from a cache), and records its wall time,
its CPU time and the final test accuracy of each experiment. A rep's ratio is PyTorch's
wall time over prunus's; the result is the median over reps. It also prints where
prunus's time went, from the `time:` line `prunus run` ends with. It prints PASS/MISS
per target and exits non-zero only when something fails to run.

Usage: bench/lottery_study.py [--build-dir build] [--reps 1] [--threads 1] [--json FILE]
                              [--python /usr/bin/python3]
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "lottery-study.cfg")
TORCH_SIDE = os.path.join(ROOT, "bench", "lottery_torch.py")
EXPERIMENTS = (("imp", "IMP-FT"), ("lth", "LTH-rewind"), ("random", "random-reinit"))
SPEED_TARGET = 3.0     # PyTorch wall / prunus wall
ACCURACY_POINTS = 1.0  # |prunus - PyTorch| final test accuracy, percentage points
NOISY_SHARE = 0.10     # other processes' share of the CPUs above which a rep is suspect


class BenchError(Exception):
    pass


def cpu_busy():
    """Seconds all CPUs were busy since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


def run(cmd, env):
    """Run cmd; return (stdout, wall seconds, CPU seconds, other processes' CPU share)."""
    busy0, t0 = cpu_busy(), time.monotonic()
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        busy1 = cpu_busy()
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise BenchError(f"{' '.join(cmd)} exited with {code}:\n{err.strip()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    other = float("nan")
    if busy0 is not None and busy1 is not None and wall > 0:
        other = max(0.0, (busy1 - busy0 - cpu) / (wall * (os.cpu_count() or 1)))
    return out, wall, cpu, other


def thread_env(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    return env


def run_torch(python, threads):
    out, wall, cpu, other = run([python, TORCH_SIDE, "--threads", str(threads)],
                                thread_env(threads))
    rounds = {name: [] for name, _ in EXPERIMENTS}
    info = None
    for line in out.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if "torch_version" in d:
            info = d
        for name, phase in EXPERIMENTS:
            if d.get("phase") == phase and "round" in d:
                rounds[name].append(d["acc_after_ft"] if "acc_after_ft" in d
                                    else d["acc_per_epoch"][-1])
    final = {n: r[-1] for n, r in rounds.items() if r}
    if info is None or info.get("torch_threads") != threads:
        raise BenchError(f"the PyTorch side ran with {info and info.get('torch_threads')} "
                         f"threads, not {threads}")
    if set(final) != {n for n, _ in EXPERIMENTS}:
        raise BenchError(f"the PyTorch side reported accuracies for {sorted(final)} only")
    return {"wall": wall, "cpu": cpu, "other_cpu": other, "accuracy": final,
            "mean_accuracy": {n: statistics.mean(r) for n, r in rounds.items()},
            "torch_version": info["torch_version"]}


TIME_LINE = re.compile(r"^time: (?P<total>[\d.]+) s: (?P<rest>.*)$", re.M)
TIME_PART = re.compile(r"(?P<what>[a-z ]+?) (?P<s>[\d.]+) s \((?P<pct>[\d.]+)%\)")


def run_prunus(prunus, threads, run_dir):
    out, wall, cpu, other = run([prunus, "run", CONFIG, "-o", run_dir, "--threads", str(threads)],
                                thread_env(threads))
    path = os.path.join(run_dir, "summary.json")
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: {e}")
    final = {e["name"]: e["rounds"][-1]["test_accuracy"] for e in summary["experiments"]}
    mean = {e["name"]: statistics.mean(r["test_accuracy"] for r in e["rounds"][1:])
            for e in summary["experiments"]}
    m = TIME_LINE.search(out)
    if not m:
        raise BenchError("`prunus run` printed no `time:` line")
    shares = {p["what"].strip(): float(p["s"]) for p in TIME_PART.finditer(m["rest"])}
    return {"wall": wall, "cpu": cpu, "other_cpu": other, "accuracy": final,
            "mean_accuracy": mean, "own_total": float(m["total"]), "shares": shares}


def verdict(ok):
    return "PASS" if ok else "MISS"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--python", default="/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK)
                    else sys.executable,
                    help="the interpreter with PyTorch 1.13 (default: Debian's /usr/bin/python3)")
    args = ap.parse_args()
    prunus = os.path.join(os.path.abspath(args.build_dir), "cli", "prunus")
    if not os.access(prunus, os.X_OK):
        raise BenchError(f"{prunus} is missing; build first: meson setup build && ninja -C build")
    tmp = tempfile.mkdtemp(prefix="prunus-lottery-")
    reps = []
    try:
        for rep in range(1, args.reps + 1):
            order = ("torch", "prunus") if rep % 2 else ("prunus", "torch")
            r = {}
            for side in order:
                if side == "torch":
                    r["torch"] = run_torch(args.python, args.threads)
                else:
                    d = os.path.join(tmp, f"rep{rep}")
                    r["prunus"] = run_prunus(prunus, args.threads, d)
                    shutil.rmtree(d, ignore_errors=True)
                print(f"rep {rep} {side:6s}: wall {r[side]['wall']:6.1f} s  CPU "
                      f"{r[side]['cpu']:6.1f} s  other processes {100 * r[side]['other_cpu']:4.1f}%"
                      f" of the CPUs  accuracy " + "  ".join(
                          f"{n} {r[side]['accuracy'][n]:.4f}" for n, _ in EXPERIMENTS),
                      flush=True)
            r["ratio"] = r["torch"]["wall"] / r["prunus"]["wall"]
            r["cpu_ratio"] = r["torch"]["cpu"] / r["prunus"]["cpu"]
            reps.append(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    ratio, cpu_ratio = med(r["ratio"] for r in reps), med(r["cpu_ratio"] for r in reps)
    diffs = {n: med(100 * (r["prunus"]["accuracy"][n] - r["torch"]["accuracy"][n]) for r in reps)
             for n, _ in EXPERIMENTS}
    noisy = any(r[s]["other_cpu"] > NOISY_SHARE for r in reps for s in ("torch", "prunus"))
    print(f"\nlottery study, {args.threads} thread(s), {len(reps)} rep(s), {cpu_model()}, "
          f"torch {reps[0]['torch']['torch_version']}")
    print(f"{'':28s} {'PyTorch':>9s} {'prunus':>9s} {'ratio':>7s}  target")
    print(f"{'wall seconds (median)':28s} {med(r['torch']['wall'] for r in reps):9.1f} "
          f"{med(r['prunus']['wall'] for r in reps):9.1f} {ratio:6.2f}x  >= {SPEED_TARGET:.0f}x "
          f"{verdict(ratio >= SPEED_TARGET)}")
    print(f"{'CPU seconds (median)':28s} {med(r['torch']['cpu'] for r in reps):9.1f} "
          f"{med(r['prunus']['cpu'] for r in reps):9.1f} {cpu_ratio:6.2f}x  (information)")
    for n, _ in EXPERIMENTS:
        ta, pa = (med(r[s]["accuracy"][n] for r in reps) for s in ("torch", "prunus"))
        print(f"{'final test accuracy, ' + n:28s} {ta:9.4f} {pa:9.4f} {diffs[n]:+5.2f}pt  "
              f"within {ACCURACY_POINTS:.0f} pt {verdict(abs(diffs[n]) <= ACCURACY_POINTS)}")
    for n, _ in EXPERIMENTS:
        ta, pa = (med(r[s]["mean_accuracy"][n] for r in reps) for s in ("torch", "prunus"))
        print(f"{'mean over rounds 1-10, ' + n:28s} {ta:9.4f} {pa:9.4f} {100 * (pa - ta):+5.2f}pt  "
              "(information: one round's accuracy moves ~1 pt epoch to epoch)")
    shares = reps[-1]["prunus"]["shares"]
    total = reps[-1]["prunus"]["own_total"]
    print(f"\nwhere prunus's time went (last rep, its own clock, {total:.1f} s): " + ", ".join(
        f"{k} {v:.2f} s ({100 * v / total:.1f}%)" for k, v in shares.items()))
    if noisy:
        print(f"warning: other processes used more than {100 * NOISY_SHARE:.0f}% of the CPUs "
              "during a run: the wall times (and the ratio) are only as good as the machine "
              "was quiet; the CPU-time ratio is the steadier figure")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "cpu": cpu_model(), "threads": args.threads, "reps": reps,
                       "ratio": ratio, "cpu_ratio": cpu_ratio,
                       "accuracy_diff_points": diffs}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"lottery_study.py: {e}", file=sys.stderr)
        sys.exit(1)
