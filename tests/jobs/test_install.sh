#!/usr/bin/env bash
# test_install.sh: installs this build into a temporary DESTDIR (no root needed),
# builds examples/custom-criterion out of tree against the installed
# prunus-plugin.pc, and runs a short `prunus run` (the installed binary and
# plugins) with that criterion on a tiny synthetic dataset.
# Usage: test_install.sh SOURCE_ROOT BUILD_ROOT MESON PYTHON3
set -euo pipefail

src=$1
build=$2
meson=$3
python=$4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/prunus-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------
# 1. Install into DESTDIR: everything lands under $dest/<prefix>.
dest=$tmp/dest
"$meson" install -C "$build" --destdir "$dest" --no-rebuild >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "meson install --destdir"; }

pc=$(find "$dest" -name prunus-plugin.pc -print -quit)
[ -n "$pc" ] || fail "prunus-plugin.pc was not installed under $dest"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
prefix=$(sed -n 's/^prefix=//p' "$pc")
[ -n "$prefix" ] || fail "$pc has no prefix= line"
root=$dest$prefix
for f in "$root/include/prunus/plugin.h" "$root/include/prunus/prunus.h" "$root/bin/prunus" \
         "$libdir/prunus/plugins/prunus-magnitude.so" "$libdir/prunus/plugins/prunus-weight.so" \
         "$libdir/prunus/plugins/prunus-finetune.so" "$pcdir/prunus.pc"; do
  [ -e "$f" ] || fail "not installed: $f"
done
# The broken loader fixtures are never installed.
# (grep without -q reads all its input: under pipefail an early exit would make the
# writer die of SIGPIPE and the pipeline fail whatever grep found)
if find "$dest" -name 'prunus-broken-*' | grep . > /dev/null; then fail "a broken fixture was installed"; fi

# The .pc files name the real prefix; point them at the DESTDIR copy.
sed -i "s|^prefix=.*|prefix=$root|" "$pcdir"/prunus*.pc
export PKG_CONFIG_PATH=$pcdir
cflags=$(echo $(pkg-config --cflags prunus-plugin))  # word-split: drops the trailing space
[ "$cflags" = "-I$root/include" ] || fail "pkg-config --cflags prunus-plugin = '$cflags'"
plugindir=$(pkg-config --variable=plugindir prunus-plugin)
[ "$plugindir" = "$libdir/prunus/plugins" ] || fail "plugindir = '$plugindir'"
[ "$(pkg-config --variable=abi_version prunus-plugin)" = 1 ] || fail "abi_version"
echo "installed under $root"

# ---------------------------------------------------------------------------
# 2. Build the example plugin out of tree, against the installed header only.
example=$tmp/example
"$meson" setup "$example" "$src/examples/custom-criterion" >"$tmp/setup.log" 2>&1 ||
  { cat "$tmp/setup.log"; fail "meson setup of examples/custom-criterion"; }
"$meson" compile -C "$example" >"$tmp/compile.log" 2>&1 ||
  { cat "$tmp/compile.log"; fail "building examples/custom-criterion"; }
so=$example/prunus-layer-normalized.so
[ -f "$so" ] || fail "$so was not built"
grep -q -- "-I$root/include" "$example/compile_commands.json" ||
  fail "the example was not compiled against the installed headers"
echo "built $so"

# ---------------------------------------------------------------------------
# 3. A tiny dataset (8x8 images, class = the bright quadrant) and a config.
data=$tmp/data
mkdir "$data"
"$python" - "$data" <<'EOF'
import random, struct, sys
d = sys.argv[1]
def write(prefix, n, seed):
    rng = random.Random(seed)
    labels, pixels = bytearray(), bytearray()
    for _ in range(n):
        k = rng.randrange(4)
        labels.append(k)
        for y in range(8):
            for x in range(8):
                q = (y >= 4) * 2 + (x >= 4)
                v = (150 if q == k else 100) + rng.gauss(0, 50)
                pixels.append(max(0, min(255, round(v))))
    with open(f"{d}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 8, 8) + pixels)
    with open(f"{d}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)
write("train", 600, 1)
write("t10k", 200, 2)
EOF
cat >"$data/example.cfg" <<'EOF'
name = "example";
seed = 5;
dataset = {
  format = "idx";
  train_images = "train-images-idx3-ubyte";
  train_labels = "train-labels-idx1-ubyte";
  test_images = "t10k-images-idx3-ubyte";
  test_labels = "t10k-labels-idx1-ubyte";
  validation = 100;
};
model = {
  input = [1, 8, 8];
  layers = (
    { type = "flatten"; },
    { type = "dense"; units = 16; }, { type = "relu"; },
    { type = "dense"; units = 4; }
  );
};
train = { epochs = 2; batch = 32; lr = 0.05; momentum = 0.9; };
prune = {
  schedule = { rounds = 2; amount = 0.5; };
  latency = { batches = [1]; seconds = 0.001; };
  criterion = { plugin = "layer-normalized"; power = 2.0; };
  granularity = { plugin = "weight"; };
  retrain = { plugin = "finetune"; epochs = 1; };
};
EOF

# ---------------------------------------------------------------------------
# 4. The installed prunus with the installed plugins and the example's.
export LD_LIBRARY_PATH=$libdir  # the installed libprunus, not the build tree's
export PRUNUS_PLUGIN_PATH=$example:$libdir/prunus/plugins
export OPENBLAS_NUM_THREADS=1
prunus=$root/bin/prunus
ldd "$prunus" | grep "libprunus\.so.* => $libdir/" > /dev/null ||
  { ldd "$prunus"; fail "the installed prunus does not use the installed libprunus"; }

"$prunus" plugins >"$tmp/plugins.out" 2>&1 || { cat "$tmp/plugins.out"; fail "prunus plugins"; }
grep -Eq "^criterion +layer-normalized +1\.0\.0 " "$tmp/plugins.out" ||
  { cat "$tmp/plugins.out"; fail "prunus plugins does not list layer-normalized"; }
grep -q "$so" "$tmp/plugins.out" || fail "prunus plugins does not show $so"
# Each plugin once: an installed prunus does not also search its build tree.
dups=$(awk '/^(criterion|granularity|retrain) / {print $1, $2}' "$tmp/plugins.out" | sort | uniq -d)
[ -z "$dups" ] || { cat "$tmp/plugins.out"; fail "prunus plugins lists more than once: $dups"; }
if grep -F -- "$build" "$tmp/plugins.out" > /dev/null; then fail "the installed prunus searched $build"; fi

status=0
"$prunus" run "$data/example.cfg" -o "$tmp/run" --threads 1 --quiet >"$tmp/run.out" 2>&1 || status=$?
cat "$tmp/run.out"
[ "$status" = 0 ] || fail "prunus run exited $status"

"$python" - "$tmp/run/summary.json" <<'EOF' || fail "summary.json"
import json, sys
s = json.load(open(sys.argv[1]))
e = s["experiments"][0]
rounds = e["rounds"]
assert len(rounds) == 3, f"expected rounds 0..2, found {len(rounds)}"
assert rounds[0]["sparsity"] == 0, rounds[0]
for r in rounds[1:]:
    assert r["sparsity"] > 0, r
# 64*16 + 16*4 = 1088 prunable weights, half of what remains per round
assert abs(rounds[1]["sparsity"] - 0.5) < 0.01 and abs(rounds[2]["sparsity"] - 0.75) < 0.01, rounds
print("sparsity by round:", [r["sparsity"] for r in rounds])
EOF
[ -f "$tmp/run/example/round-02.safetensors" ] || fail "no round-02 checkpoint"
echo "ok: the out-of-tree criterion ran against the installed prunus"
