#!/usr/bin/python3
"""train_throughput.py: prunus against PyTorch (and against its own sgemm floor) on
training throughput, plus prunus's peak memory; prints ratios measured in one run.

For each model (LeNet-300-100, LeNet-5) and thread count it runs, alternately,
`prunus train` (2 epochs), for LeNet-300-100 the sgemm-only floor (bench/sgemm_floor)
right after it, bench/torch_train.py (2 epochs) and the same with glibc's malloc
thresholds pinned (torch*, informational), REPS times each. Every rep gives its own
ratios of last-epoch training samples/s (its runs are adjacent in time); a row's ratio
is the median of its reps' ratios. With 2+ threads each rep also records the round
trip of an empty team call (bench/team_probe) before prunus and after the floor: a VM
may move its vCPUs between sharing a cache and not (docs/perf-log.md has the figures),
and every 2-thread speed with them, so a ratio of medians would mix placements; a rep
whose two probes disagree is reported as having changed placement midway. Then it
measures the peak RSS of a `prunus train configs/lenet300.cfg` run. It prints PASS/MISS
per target and exits non-zero only when something fails to run, never on a missed
target.

Usage: bench/train_throughput.py [--build-dir build-bench] [--reps 3] [--threads 1,2]
                                 [--models lenet300,lenet5] [--retry-noisy N] [--json FILE]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 2  # the first epoch is warm-up on both sides; the last one is reported

# minimum prunus/torch ratio per (model, threads)
TORCH_TARGETS = {("lenet300", 1): 1.3, ("lenet300", 2): 1.6,
                 ("lenet5", 1): 2.0, ("lenet5", 2): 2.0}
FLOOR_TARGET = 0.85       # prunus / sgemm-only floor, LeNet-300-100
MEMORY_LIMIT_MB = 200.0   # peak RSS of `prunus train configs/lenet300.cfg`
TORCH_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(16 << 20),
                    "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
NOISY_SHARE = 0.10        # other processes' share of the CPUs above which a row is suspect
FAR_US = 0.25             # team round trip above which the two vCPUs are far apart


class BenchError(Exception):
    pass


class CpuMeter:
    """CPU time that processes other than ours used while we measured: every number
    here is only as good as the machine was quiet. Reads /proc/stat (all CPUs) and
    subtracts the CPU time of the children we ran (from wait4)."""

    def __init__(self):
        self.own = 0.0  # seconds of CPU our children used since start()
        self.start()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
        return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def start(self):
        self.busy0, self.wall0, self.own = self._busy(), time.monotonic(), 0.0

    def add_child(self, usage):
        self.own += usage.ru_utime + usage.ru_stime

    def foreign_share(self):
        """Fraction of all CPUs' time used by other processes since start()."""
        busy = self._busy()
        wall = time.monotonic() - self.wall0
        if busy is None or self.busy0 is None or wall <= 0:
            return float("nan")
        return max(0.0, (busy - self.busy0 - self.own) / (wall * (os.cpu_count() or 1)))


METER = CpuMeter()


def run_with_rss(cmd, env=None):
    """Run cmd, capturing stdout/stderr to files; return (stdout, peak RSS in MiB)."""
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        METER.add_child(usage)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{err.strip()}")
    return out, usage.ru_maxrss / 1024.0


def clean_env(**extra):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
              "GOTO_NUM_THREADS"):
        env.pop(k, None)
    env.update(extra)
    return env


class Bench:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.prunus = os.path.join(args.build_dir, "cli", "prunus")
        self.floor = os.path.join(args.build_dir, "bench", "sgemm_floor")
        self.probe = os.path.join(args.build_dir, "bench", "team_probe")
        self.counter = 0
        for exe in (self.prunus, self.floor, self.probe):
            if not os.access(exe, os.X_OK):
                raise BenchError(f"{exe} is missing; build first: meson setup "
                                 f"{os.path.relpath(args.build_dir, ROOT)} && ninja -C "
                                 f"{os.path.relpath(args.build_dir, ROOT)}")

    def run_dir(self):
        self.counter += 1
        return os.path.join(self.tmp, f"run{self.counter}")

    def prunus_train(self, model, threads, epochs=EPOCHS):
        """Last-epoch samples/s and peak RSS (MiB) of `prunus train`."""
        d = self.run_dir()
        cmd = [self.prunus, "train", os.path.join(ROOT, "configs", model + ".cfg"), "-o", d,
               "--threads", str(threads), "--quiet", "--set", f"train.epochs={epochs}"]
        _, rss = run_with_rss(cmd, clean_env())
        path = os.path.join(d, "metrics.jsonl")
        try:
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            raise BenchError(f"{path}: cannot read the epoch metrics: {e}")
        rows = [r for r in rows if "samples_per_second" in r]
        if len(rows) != epochs:
            raise BenchError(f"{path}: expected {epochs} epoch rows, found {len(rows)}")
        shutil.rmtree(d, ignore_errors=True)
        return rows[-1]["samples_per_second"], rss

    def torch_train(self, model, threads, tuned_malloc=False):
        env = clean_env()
        if threads > 1:
            # PyTorch's fastest OpenMP wait policy where the targets were set
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        if tuned_malloc:
            # glibc serves PyTorch's per-step ~1 MB temporaries with mmap/munmap until its
            # dynamic threshold adapts, so every step page-faults; pinning the thresholds
            # removes those faults and the run-to-run swing they cause (docs/perf-log.md).
            env.update(TORCH_MALLOC_ENV)
        cmd = [sys.executable, os.path.join(ROOT, "bench", "torch_train.py"), "--model", model,
               "--threads", str(threads), "--epochs", str(EPOCHS), "--batch", "128"]
        out, _ = run_with_rss(cmd, env)
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            raise BenchError(f"torch_train.py printed no JSON ({e}): {out!r}")
        if r.get("torch_threads") != threads:
            raise BenchError(f"torch ran with {r.get('torch_threads')} threads, not {threads}")
        if r.get("blas_threads") not in (None, threads):
            raise BenchError(f"torch's BLAS ran with {r.get('blas_threads')} threads, "
                             f"not {threads}")
        return r["samples_per_second"]

    def sgemm_floor(self, threads):
        out, _ = run_with_rss([self.floor, "--threads", str(threads), "--epochs", "3"],
                              clean_env())
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            raise BenchError(f"sgemm_floor printed no JSON ({e}): {out!r}")
        return r["samples_per_second"]

    def team_round_trip(self):
        """Microseconds per empty call of a 2-thread team: how far apart the CPUs are."""
        out, _ = run_with_rss([self.probe], clean_env())
        try:
            return json.loads(out.strip().splitlines()[-1])["round_trip_us"]
        except (ValueError, IndexError, KeyError) as e:
            raise BenchError(f"team_probe printed no JSON ({e}): {out!r}")


def placement_changed(round_trips):
    """Did the vCPUs move (near <-> far) between the two probes of a rep?"""
    before, after = round_trips
    return (before > FAR_US) != (after > FAR_US)


def measure_row(bench, model, threads, reps, tuned, log):
    """REPS alternating runs of prunus, the sgemm floor (LeNet-300-100 only), torch and
    torch with pinned malloc thresholds (when tuned) for one model and thread count;
    with 2+ threads the team round trip is taken before prunus and again after the
    floor (after prunus without one), to tell a rep whose placement changed."""
    p, t, tt, f, rt = [], [], [], [], []
    METER.start()
    for rep in range(1, reps + 1):
        before = bench.team_round_trip() if threads > 1 else None
        p.append(bench.prunus_train(model, threads)[0])
        if model == "lenet300":
            f.append(bench.sgemm_floor(threads))
        if threads > 1:
            rt.append((before, bench.team_round_trip()))
        t.append(bench.torch_train(model, threads))
        if tuned:
            tt.append(bench.torch_train(model, threads, tuned_malloc=True))
        log(f"  {model} threads={threads} rep {rep}: prunus {p[-1]:.0f}"
            + (f"  floor {f[-1]:.0f}" if f else "") + f"  torch {t[-1]:.0f}"
            + (f"  torch* {tt[-1]:.0f}" if tt else "") + " samples/s"
            + (f"  (team round trip {rt[-1][0]:.2f} -> {rt[-1][1]:.2f} us"
               + (": placement changed" if placement_changed(rt[-1]) else "") + ")"
               if rt else ""))
    med = lambda v: statistics.median(v) if v else None  # noqa: E731
    paired = lambda a, b: med([x / y for x, y in zip(a, b)]) if b else None  # noqa: E731
    return {"model": model, "threads": threads, "prunus": p, "torch": t, "torch_tuned": tt,
            "floor": f, "team_round_trip_us": rt, "prunus_median": med(p),
            "torch_median": med(t), "torch_tuned_median": med(tt), "floor_median": med(f),
            "torch_ratio": paired(p, t), "torch_tuned_ratio": paired(p, tt),
            "floor_ratio": paired(p, f), "foreign_cpu": METER.foreign_share()}


def verdict(ok):
    return "PASS" if ok else "MISS"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return float("nan")


def main():
    ap = argparse.ArgumentParser(
        description="prunus vs PyTorch training throughput and prunus's peak memory; "
                    "ratios measured in one run")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"),
                    help="Meson build folder holding cli/prunus and bench/sgemm_floor")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3)")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--quiet", action="store_true", help="no per-run lines")
    ap.add_argument("--no-torch-tuned", action="store_true",
                    help="skip the informational torch* runs (torch with pinned glibc malloc "
                         "thresholds)")
    ap.add_argument("--retry-noisy", type=int, default=0, metavar="N",
                    help="measure a model/threads row again, up to N times, when other "
                         "processes used more than 10%% of the CPUs meanwhile (default 0)")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    threads_list = [int(t) for t in args.threads.split(",") if t]
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in ("lenet300", "lenet5"):
            ap.error(f"unknown model {m!r}; use lenet300 and/or lenet5")
    if args.reps < 1 or not threads_list or min(threads_list) < 1:
        ap.error("--reps and every --threads value must be >= 1")

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} CPUs",
               "loadavg_start": loadavg(), "reps": args.reps, "rows": [], "targets": []}
    tmp = tempfile.mkdtemp(prefix="prunus-bench-")
    try:
        bench = Bench(args, tmp)
        log(f"# load average at start: {results['loadavg_start']:.2f} "
            f"(other busy processes skew every number below)")
        for model in models:
            for threads in threads_list:
                for attempt in range(args.retry_noisy + 1):
                    row = measure_row(bench, model, threads, args.reps,
                                      not args.no_torch_tuned, log)
                    if row["foreign_cpu"] <= NOISY_SHARE:
                        break
                    log(f"  other processes used {100 * row['foreign_cpu']:.0f}% of the CPUs"
                        + (", measuring again" if attempt < args.retry_noisy else ""))
                results["rows"].append(row)

        # peak memory: a full `prunus train configs/lenet300.cfg` (1 epoch has the same
        # peak as 10: every buffer is allocated before the first step)
        mem_threads = max(threads_list)
        _, rss = bench.prunus_train("lenet300", mem_threads, epochs=1)
        results["peak_rss_mb"] = rss * 1.048576  # MiB -> MB
        results["peak_rss_threads"] = mem_threads
    except BenchError as e:
        print(f"train_throughput: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_end"] = loadavg()

    # ---- table
    print(f"prunus vs PyTorch {subprocess_torch_version()} training throughput, batch 128, "
          f"median of {args.reps} alternating runs (last of {EPOCHS} epochs), samples/s; "
          f"ratios: median of each rep's own ratio")
    print(f"{'model':<9} {'thr':>3} {'prunus':>8} {'torch':>8} {'torch*':>8} {'floor':>8}  "
          f"{'prunus/torch':>12} {'target':>6}      {'prunus/torch*':>13}  "
          f"{'prunus/floor':>12} {'target':>6}      {'other CPU':>9}")
    targets = results["targets"]

    def num(v, fmt):
        return format(v, fmt) if v else format("-", fmt.rstrip("0.f").rstrip(".") or ">")

    for row in results["rows"]:
        m, th = row["model"], row["threads"]
        pm = row["prunus_median"]
        ratio = row["torch_ratio"]
        want = TORCH_TARGETS.get((m, th))
        tcell = f"{want:>5.2f}x {verdict(ratio >= want)}" if want else f"{'-':>6}     "
        if want:
            targets.append({"what": f"{m} prunus/torch, {th} thread(s)", "ratio": ratio,
                            "target": want, "pass": ratio >= want})
        tt = row["torch_tuned_median"]
        ttcell = f"{row['torch_tuned_ratio']:>12.2f}x" if tt else f"{'-':>13}"
        fcell = f"{'-':>12} {'':>6}     "
        if row["floor_median"]:
            fr = row["floor_ratio"]
            fcell = f"{fr:>12.2f} {FLOOR_TARGET:>5.2f}x {verdict(fr >= FLOOR_TARGET)}"
            targets.append({"what": f"{m} prunus/sgemm floor, {th} thread(s)", "ratio": fr,
                            "target": FLOOR_TARGET, "pass": fr >= FLOOR_TARGET})
        print(f"{m:<9} {th:>3} {pm:>8.0f} {row['torch_median']:>8.0f} {num(tt, '>8.0f')} "
              f"{num(row['floor_median'], '>8.0f')}  {ratio:>11.2f}x {tcell} {ttcell}  {fcell} "
              f"{100 * row['foreign_cpu']:>8.0f}%")
    print("torch* = torch with glibc malloc thresholds pinned (MALLOC_MMAP_THRESHOLD_, "
          "MALLOC_TRIM_THRESHOLD_): informational, no target")
    for row in results["rows"]:
        if row["team_round_trip_us"]:
            changed = sum(placement_changed(r) for r in row["team_round_trip_us"])
            print(f"{row['model']} {row['threads']} threads: team round trip per rep "
                  + ", ".join(f"{a:.2f}->{b:.2f}" for a, b in row["team_round_trip_us"])
                  + " us (~0.1: the two vCPUs near, ~0.45: far apart, where every 2-thread "
                  "speed drops)"
                  + (f"; {changed} rep(s) changed placement midway, their ratios compare "
                     "runs made apart" if changed else ""))
    rss = results["peak_rss_mb"]
    mem_ok = rss < MEMORY_LIMIT_MB
    targets.append({"what": "lenet300 peak RSS (MB)", "value": rss, "target": MEMORY_LIMIT_MB,
                    "pass": mem_ok})
    print(f"peak RSS of `prunus train configs/lenet300.cfg --threads "
          f"{results['peak_rss_threads']}`: {rss:.1f} MB = {rss / MEMORY_LIMIT_MB:.2f} of the "
          f"{MEMORY_LIMIT_MB:.0f} MB bar  {verdict(mem_ok)}")
    noisy = [r for r in results["rows"] if r["foreign_cpu"] > NOISY_SHARE]
    if noisy:
        print("WARNING: other processes used more than 10% of the CPUs during "
              + ", ".join(f"{r['model']}/{r['threads']}t" for r in noisy)
              + "; those ratios are not trustworthy, rerun on a quiet machine")
    passed = sum(t["pass"] for t in targets)
    print(f"targets: {passed}/{len(targets)} PASS; load average {results['loadavg_start']:.2f}"
          f" at start, {results['loadavg_end']:.2f} at end")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def subprocess_torch_version():
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
