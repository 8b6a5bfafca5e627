#!/bin/sh
# disk-full.sh: a real full disk (ENOSPC) in the middle of `prunus run`, on a small tmpfs:
# the run must stop with an error naming the file, keep every earlier round whole (each
# checkpoint loads, summary.json parses, no temporary file is left), and resume to the
# same final checkpoint as an unhindered run once the tmpfs is enlarged. Needs root
# (mount); tests/jobs/test_faults.c does the same with RLIMIT_FSIZE (EFBIG) unprivileged.
# Usage: sudo scripts/disk-full.sh [SIZE_KB]   (default 160: fills up around round 10)
set -eu
cd "$(dirname "$0")/.."
size=${1:-160}
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
prunus=$PWD/build/cli/prunus
work=$(mktemp -d)
mnt=$work/disk
mkdir -p "$mnt"
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# data and config: 8x8 images, class k = quadrant k bright; 20 rounds of the magnitude
# criterion, so summary.json and the checkpoints keep growing the folder
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
"$prunus" run full.cfg -o ref --threads 1 -q >/dev/null
mount -t tmpfs -o size="${size}k" tmpfs "$mnt"
status=0
"$prunus" run full.cfg -o "$mnt/run" --threads 1 -q >out.txt 2>err.txt || status=$?
echo "disk-full: first run on a ${size} kB tmpfs: exit status $status"
sed 's/^/  /' err.txt
[ "$status" -eq 1 ] || { echo "disk-full: FAIL: expected exit status 1"; exit 1; }
grep -q "No space left on device" err.txt || { echo "disk-full: FAIL: no ENOSPC message"; exit 1; }
grep -q "$mnt/run/" err.txt || { echo "disk-full: FAIL: the message names no file of the run"; exit 1; }
python3 - "$mnt/run" <<'PY'
import json, os, sys
run = sys.argv[1]
s = json.load(open(f"{run}/summary.json"))
rounds = s["experiments"][0]["rounds"] if s["experiments"] else []
for r in rounds:
    path = f"{run}/{r['checkpoint']}"
    assert os.path.getsize(path) == r["checkpoint_bytes"], path
for line in open(f"{run}/metrics.jsonl"):
    json.loads(line)
left = [os.path.join(d, f) for d, _, fs in os.walk(run) for f in fs
        if ".tmp-" in f or f.endswith(".last-words") or (f.startswith("summary.json.") and len(f) > 13)]
assert not left, left
print(f"disk-full: {len(rounds)} rounds kept whole (status {s['status']!r}), "
      f"every metrics line parses, no temporary file left")
PY
mount -o remount,size=4m "$mnt"
"$prunus" run full.cfg -o "$mnt/run" --threads 1 -q >/dev/null
cmp "$mnt/run/full/round-20.safetensors" ref/full/round-20.safetensors
echo "disk-full: after freeing space the same command resumed; round 20 is byte-identical to the unhindered run's"
