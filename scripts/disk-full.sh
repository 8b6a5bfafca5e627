#!/bin/sh
# disk-full.sh: a real full disk (ENOSPC) in the middle of `prunus run`, on small tmpfs
# mounts, one per size: each run must stop with status 1 and one error naming a file of
# the run folder; every earlier round stays byte-identical to an unhindered run's
# (checkpoints, θ sidecars, metrics lines but their timings, config.cfg); no file is
# left that the unhindered run does not have (temporary or partial files); and once the
# tmpfs is enlarged the same command resumes to the unhindered run's bytes.
# Mounting needs root, or an unprivileged user namespace (the script re-executes itself
# under `unshare -rm`); without either it exits 77 (skipped). The Meson test `disk-full`
# runs it; tests/jobs/test_faults.c does the same with RLIMIT_FSIZE (EFBIG).
# Usage: scripts/disk-full.sh [SIZE_KB...]   (the run folder takes about 840 kB; each
#   default size stops a different write: the pretraining cache, a round's θ sidecar,
#   summary.json, a checkpoint, the plots, summary.md, report.html)
# PRUNUS_BIN: the prunus binary (default: build/cli/prunus, built first).
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  if [ -z "${DISK_FULL_UNSHARED:-}" ] && command -v unshare >/dev/null &&
    unshare -rm true 2>/dev/null; then
    DISK_FULL_UNSHARED=1 exec unshare -rm "$0" "$@"
  fi
  echo "disk-full: skipped: mounting a tmpfs needs root or user namespaces"
  exit 77
fi
if [ -z "${PRUNUS_BIN:-}" ]; then
  [ -f build/build.ninja ] || meson setup build >/dev/null
  ninja -C build >/dev/null
  PRUNUS_BIN=$PWD/build/cli/prunus
fi
[ $# -eq 0 ] && set -- 20 40 60 100 200 520 600 680 720
work=$(mktemp -d)
mnt=$work/disk
mkdir -p "$mnt"
cleanup() {
  umount "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
if ! mount -t tmpfs -o size=64k tmpfs "$mnt" 2>/dev/null; then
  echo "disk-full: skipped: cannot mount a tmpfs here"
  exit 77
fi
umount "$mnt"
# data and config: 8x8 images, class k = quadrant k bright; 20 rounds of the magnitude
# criterion, so summary.json and the checkpoints keep growing the folder, then the
# report (plots, report.html) at the end
python3 - "$work" <<'PY'
import random, struct, sys
w = sys.argv[1]; random.seed(1)
def write(prefix, n):
    img, lab = bytearray(), bytearray()
    for _ in range(n):
        k = random.randrange(4); lab.append(k)
        for p in range(64):
            q = (p // 8 >= 4) * 2 + (p % 8 >= 4)
            img.append(max(0, min(255, (150 if q == k else 100) + random.randint(-60, 60))))
    open(f"{w}/{prefix}-images", "wb").write(struct.pack(">IIII", 0x803, n, 8, 8) + img)
    open(f"{w}/{prefix}-labels", "wb").write(struct.pack(">II", 0x801, n) + lab)
write("train", 500); write("test", 200)
open(f"{w}/full.cfg", "w").write('''name = "full"; seed = 3;
dataset = { train_images = "train-images"; train_labels = "train-labels";
  test_images = "test-images"; test_labels = "test-labels"; validation = 100; };
model = { input = [1, 8, 8]; layers = ( { type = "flatten"; }, { type = "dense"; units = 16; },
  { type = "relu"; }, { type = "dense"; units = 4; } ); };
train = { epochs = 2; batch = 32; lr = 0.05; };
prune = { schedule = { rounds = 20; amount = 0.2; }; latency = { batches = [1]; seconds = 0.001; };
  criterion = { plugin = "magnitude"; }; granularity = { plugin = "weight"; };
  retrain = { plugin = "finetune"; epochs = 1; }; };
''')
PY
cd "$work"
export OPENBLAS_NUM_THREADS=1
"$PRUNUS_BIN" run full.cfg -o ref --threads 1 -q >/dev/null

# check.py RUN REF PHASE: PHASE "stopped": what is there is the unhindered run's, up to
# the rounds summary.json records; "resumed": everything the unhindered run wrote
cat >check.py <<'PY'
import filecmp, json, os, sys
run, ref, phase = sys.argv[1:4]
def files(d):
    return {os.path.relpath(os.path.join(p, f), d) for p, _, fs in os.walk(d) for f in fs}
extra = files(run) - files(ref)
assert not extra, f"files the unhindered run does not have (temporary or partial): {sorted(extra)}"
s = json.load(open(f"{run}/summary.json")) if os.path.exists(f"{run}/summary.json") else None
exps = s["experiments"] if s else []
rounds = exps[0].get("rounds", []) if exps else []
if phase == "resumed":
    assert s["status"] == "finished" and len(rounds) == 21, (s["status"], len(rounds))
same = ["config.cfg"] if os.path.exists(f"{run}/config.cfg") else []
for r in rounds:
    for f in (r["checkpoint"], r["checkpoint"].replace(".safetensors", ".theta.safetensors")):
        if os.path.exists(f"{ref}/{f}"):
            same.append(f)
for f in same:
    assert filecmp.cmp(f"{run}/{f}", f"{ref}/{f}", shallow=False), f"{f} differs from the unhindered run's"
def lines(d):
    if not os.path.exists(f"{d}/metrics.jsonl"):
        return []
    out = []
    for line in open(f"{d}/metrics.jsonl"):
        v = json.loads(line)  # every line whole
        out.append({k: x for k, x in v.items() if k not in ("seconds", "samples_per_second")})
    return out
got, want = lines(run), lines(ref)
assert got == want[: len(got)], "metrics.jsonl differs from the unhindered run's"
if phase == "resumed":
    assert len(got) == len(want), (len(got), len(want))
print(f"{len(rounds)} {len(same)} {len(got)} {s['status'] if s else 'none'}")
PY

fails=0
for size in "$@"; do
  mount -t tmpfs -o size="${size}k" tmpfs "$mnt"
  status=0
  "$PRUNUS_BIN" run full.cfg -o "$mnt/run" --threads 1 -q >out.txt 2>err.txt || status=$?
  # the error names the file the run was writing (first), then maybe its temporary file
  named=$(grep '^prunus: error: .*No space left on device' err.txt | grep -o "$mnt/run/[^ :“”]*" |
    head -1 | sed "s|^$mnt/run/||")
  why=""
  [ "$status" -eq 1 ] || why="exit status $status, expected 1"
  [ -n "$named" ] || why="${why:+$why; }no error naming a file of the run with ENOSPC"
  [ "$(grep -c '^prunus: error:' err.txt)" -eq 1 ] || why="${why:+$why; }not one error line"
  kept=$(python3 check.py "$mnt/run" ref stopped 2>&1) || why="${why:+$why; }$kept"
  if [ -z "$why" ]; then
    mount -o remount,size=4m tmpfs "$mnt"
    status=0
    "$PRUNUS_BIN" run full.cfg -o "$mnt/run" --threads 1 -q >out2.txt 2>err2.txt || status=$?
    [ "$status" -eq 0 ] || why="the rerun: exit status $status: $(cat err2.txt)"
    [ -n "$why" ] || done=$(python3 check.py "$mnt/run" ref resumed 2>&1) || why="the rerun: $done"
  fi
  set -- $kept
  if [ -z "$why" ]; then
    echo "disk-full: ${size} kB: status 1 at $named ($1 rounds kept, $2 files identical," \
      "$3 metrics lines, status '$4'); resumed: 21 rounds identical to the unhindered run"
  else
    echo "disk-full: ${size} kB: FAIL: $why"
    sed 's/^/  /' err.txt
    fails=$((fails + 1))
  fi
  umount "$mnt"
done
[ "$fails" -eq 0 ] || exit 1
