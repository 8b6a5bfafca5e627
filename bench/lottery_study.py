#!/usr/bin/python3
"""lottery_study.py: the whole lottery-ticket study, prunus against PyTorch 1.13, end to end.

The study (configs/lottery-study.cfg; its PyTorch side, bench/lottery_torch.py, is the
one PyTorch users run with torch.nn.utils.prune): LeNet-300-100 on Fashion-MNIST,
pretrained 10 epochs, then three experiments of 10 rounds of 20% global magnitude
pruning: IMP (1 epoch of fine-tuning), LTH (rewind to θ0, 3 epochs) and the random
re-init control (LTH's masks, 3 epochs).

Both sides run at seeds 0..S-1 (--seeds; prunus `--set seed=K`, lottery_torch.py
`--seed K`): one seed's final-round accuracy moves by 1-2 points with the seed on both
sides, so accuracy is compared as the mean over seeds, printed with each side's
standard deviation and the standard error of the difference. Each seed runs both sides
one after the other (the order alternates from seed to seed; --reps N runs each seed's
pair N times), each as a fresh process with a fresh run folder (prunus pretrains every
time: nothing comes from a cache), and records wall time, CPU time and the test
accuracy of every round. Each pair gives a speed ratio (PyTorch's wall time over
prunus's: the same work at every seed); the result is the median over pairs. It also
prints where prunus's time went, from the `time:` line `prunus run` ends with. It
prints PASS/MISS per target and exits non-zero only when something fails to run.
--rounds and --pretrain-epochs shorten the study on both sides for a quick check (the
targets are for the full study).

Usage: bench/lottery_study.py [--build-dir build] [--seeds 4] [--reps 1] [--threads 1]
                              [--rounds 10] [--pretrain-epochs 10] [--json FILE]
                              [--python /usr/bin/python3]
"""
import argparse
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from benchenv import cpu_model, load_average

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


def run_torch(python, threads, seed, study):
    cmd = [python, TORCH_SIDE, "--threads", str(threads), "--seed", str(seed),
           "--rounds", str(study.rounds), "--pre", str(study.pretrain_epochs)]
    out, wall, cpu, other = run(cmd, thread_env(threads))
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
    if info is None or info.get("torch_threads") != threads:
        raise BenchError(f"the PyTorch side ran with {info and info.get('torch_threads')} "
                         f"threads, not {threads}")
    short = sorted(n for n, r in rounds.items() if len(r) != study.rounds)
    if short:
        raise BenchError(f"the PyTorch side reported fewer than {study.rounds} rounds for "
                         f"{', '.join(short)}")
    return {"wall": wall, "cpu": cpu, "other_cpu": other, "rounds": rounds,
            "torch_version": info["torch_version"]}


TIME_LINE = re.compile(r"^time: (?P<total>[\d.]+) s: (?P<rest>.*)$", re.M)
TIME_PART = re.compile(r"(?P<what>[a-z ]+?) (?P<s>[\d.]+) s \((?P<pct>[\d.]+)%\)")


def run_prunus(prunus, threads, seed, study, run_dir):
    cmd = [prunus, "run", CONFIG, "-o", run_dir, "--threads", str(threads),
           "--set", f"seed={seed}", "--set", f"prune.schedule.rounds={study.rounds}",
           "--set", f"train.epochs={study.pretrain_epochs}"]
    out, wall, cpu, other = run(cmd, thread_env(threads))
    path = os.path.join(run_dir, "summary.json")
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: {e}")
    rounds = {e["name"]: [r["test_accuracy"] for r in e["rounds"][1:]]
              for e in summary["experiments"]}
    if sorted(rounds) != sorted(n for n, _ in EXPERIMENTS) or any(
            len(r) != study.rounds for r in rounds.values()):
        raise BenchError(f"{path}: expected {study.rounds} rounds of each of "
                         f"{', '.join(n for n, _ in EXPERIMENTS)}")
    m = TIME_LINE.search(out)
    if not m:
        raise BenchError("`prunus run` printed no `time:` line")
    shares = {p["what"].strip(): float(p["s"]) for p in TIME_PART.finditer(m["rest"])}
    return {"wall": wall, "cpu": cpu, "other_cpu": other, "rounds": rounds,
            "own_total": float(m["total"]), "shares": shares}


def verdict(ok):
    return "PASS" if ok else "MISS"


def spread(xs):
    """(mean, sample standard deviation; 0 for one value)."""
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def compare(per_side):
    """per_side: {"torch": [x per seed], "prunus": [...]} -> the row of the accuracy table:
    both means and standard deviations, the difference of the means in points, and its
    standard error (sqrt(sd_t^2/n_t + sd_p^2/n_p), 0 with one seed a side)."""
    (tm, ts), (pm, ps) = spread(per_side["torch"]), spread(per_side["prunus"])
    se = math.sqrt(ts ** 2 / len(per_side["torch"]) + ps ** 2 / len(per_side["prunus"]))
    return {"torch_mean": tm, "torch_sd": ts, "prunus_mean": pm, "prunus_sd": ps,
            "diff_points": 100 * (pm - tm), "se_points": 100 * se}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seeds", type=int, default=4,
                    help="seeds 0..S-1 on each side; accuracy is compared over them "
                    "(default 4: about 10 minutes on a quiet machine)")
    ap.add_argument("--reps", type=int, default=1, help="pairs of runs per seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10, help="pruning rounds (quick check: 2)")
    ap.add_argument("--pretrain-epochs", type=int, default=10,
                    help="pretraining epochs (quick check: 1)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--python", default="/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK)
                    else sys.executable,
                    help="the interpreter with PyTorch 1.13 (default: Debian's /usr/bin/python3)")
    args = ap.parse_args()
    if args.seeds < 1 or args.reps < 1 or args.rounds < 1 or args.pretrain_epochs < 1:
        raise BenchError("--seeds, --reps, --rounds and --pretrain-epochs must be >= 1")
    prunus = os.path.join(os.path.abspath(args.build_dir), "cli", "prunus")
    if not os.access(prunus, os.X_OK):
        raise BenchError(f"{prunus} is missing; build first: meson setup build && ninja -C build")
    tmp = tempfile.mkdtemp(prefix="prunus-lottery-")
    pairs = []    # every pair of runs, for the speed ratio
    by_seed = {}  # seed -> {"torch": run, "prunus": run}: the seed's first pair
    try:
        for seed in range(args.seeds):
            for rep in range(args.reps):
                k = len(pairs)
                order = ("torch", "prunus") if k % 2 == 0 else ("prunus", "torch")
                r = {"seed": seed, "load_before": load_average()}
                for side in order:
                    if side == "torch":
                        r["torch"] = run_torch(args.python, args.threads, seed, args)
                    else:
                        d = os.path.join(tmp, f"seed{seed}-rep{rep}")
                        r["prunus"] = run_prunus(prunus, args.threads, seed, args, d)
                        shutil.rmtree(d, ignore_errors=True)
                    print(f"seed {seed} rep {rep + 1} {side:6s}: wall {r[side]['wall']:6.1f} s  "
                          f"CPU {r[side]['cpu']:6.1f} s  other processes "
                          f"{100 * r[side]['other_cpu']:4.1f}% of the CPUs  final accuracy "
                          + "  ".join(f"{n} {r[side]['rounds'][n][-1]:.4f}"
                                      for n, _ in EXPERIMENTS), flush=True)
                r["load_after"] = load_average()
                r["ratio"] = r["torch"]["wall"] / r["prunus"]["wall"]
                r["cpu_ratio"] = r["torch"]["cpu"] / r["prunus"]["cpu"]
                pairs.append(r)
                by_seed.setdefault(seed, r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    ratio, cpu_ratio = med(r["ratio"] for r in pairs), med(r["cpu_ratio"] for r in pairs)
    seeds = sorted(by_seed)
    final = {n: compare({s: [by_seed[k][s]["rounds"][n][-1] for k in seeds]
                         for s in ("torch", "prunus")}) for n, _ in EXPERIMENTS}
    mean = {n: compare({s: [statistics.mean(by_seed[k][s]["rounds"][n]) for k in seeds]
                        for s in ("torch", "prunus")}) for n, _ in EXPERIMENTS}
    noisy = any(r[s]["other_cpu"] > NOISY_SHARE for r in pairs for s in ("torch", "prunus"))
    print(f"\nlottery study, {args.threads} thread(s), seeds 0..{args.seeds - 1}, {len(pairs)} "
          f"pair(s) of runs, {args.pretrain_epochs} pretraining epochs, {args.rounds} rounds, "
          f"{cpu_model()}, torch {pairs[0]['torch']['torch_version']}, load average "
          f"{pairs[0]['load_before']} before, {pairs[-1]['load_after']} after")
    print(f"{'':30s} {'PyTorch':>15s} {'prunus':>15s} {'ratio':>8s}  target")
    print(f"{'wall seconds (median)':30s} {med(r['torch']['wall'] for r in pairs):15.1f} "
          f"{med(r['prunus']['wall'] for r in pairs):15.1f} {ratio:7.2f}x  >= "
          f"{SPEED_TARGET:.0f}x {verdict(ratio >= SPEED_TARGET)}")
    print(f"{'CPU seconds (median)':30s} {med(r['torch']['cpu'] for r in pairs):15.1f} "
          f"{med(r['prunus']['cpu'] for r in pairs):15.1f} {cpu_ratio:7.2f}x  (information)")
    print(f"{'test accuracy, mean ± sd':30s} {'over seeds':>15s} {'over seeds':>15s} "
          f"{'diff':>8s}")
    for n, _ in EXPERIMENTS:
        c = final[n]
        print(f"{'final round, ' + n:30s} {c['torch_mean']:8.4f} ±{c['torch_sd']:.3f} "
              f"{c['prunus_mean']:8.4f} ±{c['prunus_sd']:.3f} {c['diff_points']:+6.2f}pt  "
              f"within {ACCURACY_POINTS:.0f} pt {verdict(abs(c['diff_points']) <= ACCURACY_POINTS)}"
              f" (standard error {c['se_points']:.2f} pt)")
    for n, _ in EXPERIMENTS:
        c = mean[n]
        print(f"{'mean of rounds 1-' + str(args.rounds) + ', ' + n:30s} {c['torch_mean']:8.4f} "
              f"±{c['torch_sd']:.3f} {c['prunus_mean']:8.4f} ±{c['prunus_sd']:.3f} "
              f"{c['diff_points']:+6.2f}pt  (information; standard error "
              f"{c['se_points']:.2f} pt)")
    if args.seeds == 1:
        print("one seed a side: its final-round accuracy moves by 1-2 points with the seed on "
              "both sides; use --seeds 4 before reading a difference as the implementations'")
    shares = pairs[-1]["prunus"]["shares"]
    total = pairs[-1]["prunus"]["own_total"]
    print(f"\nwhere prunus's time went (last run, its own clock, {total:.1f} s): " + ", ".join(
        f"{k} {v:.2f} s ({100 * v / total:.1f}%)" for k, v in shares.items()))
    if noisy:
        print(f"warning: other processes used more than {100 * NOISY_SHARE:.0f}% of the CPUs "
              "during a run: the wall times (and the ratio) are only as good as the machine "
              "was quiet; the CPU-time ratio is the steadier figure")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                       "cpu": cpu_model(), "threads": args.threads, "seeds": args.seeds,
                       "rounds": args.rounds, "pretrain_epochs": args.pretrain_epochs,
                       "pairs": pairs, "ratio": ratio, "cpu_ratio": cpu_ratio,
                       "final_accuracy": final, "mean_accuracy": mean}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"lottery_study.py: {e}", file=sys.stderr)
        sys.exit(1)
