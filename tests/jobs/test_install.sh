#!/usr/bin/env bash
# test_install.sh: installs this build into a temporary DESTDIR (no root needed),
# checks that the installed prunus resolves the installed libprunus by itself (no
# LD_LIBRARY_PATH), builds each examples/ plugin project out of tree with nothing
# but pkg-config (PKG_CONFIG_PATH into the DESTDIR prefix), and runs them with the
# installed prunus on a tiny synthetic dataset, checking what each should produce.
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

# What a user's shell has is not what an installed program may rely on.
unset LD_LIBRARY_PATH PRUNUS_PLUGIN_PATH PRUNUS_DEBUG PKG_CONFIG_PATH

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
# The README's table: the configs land in share/prunus/configs.
[ -f "$root/share/prunus/configs/lenet300.cfg" ] ||
  fail "configs were not installed into $root/share/prunus/configs"
# ... and the documentation a plugin author reads in share/doc/prunus, where the
# README's links (docs/plugins.md) resolve.
for doc in README.md docs/plugins.md docs/post-training.md \
  examples/custom-granularity/n_of_m.c examples/custom-granularity/meson.build; do
  [ -f "$root/share/doc/prunus/$doc" ] || fail "$doc was not installed into $root/share/doc/prunus"
done
# The README says where the .pc files land: <prefix>/<libdir>/pkgconfig.
case $pcdir in
  "$root"/lib/pkgconfig | "$root"/lib64/pkgconfig | "$root"/lib/*-linux-gnu/pkgconfig) ;;
  *) fail "prunus-plugin.pc landed in $pcdir, not <prefix>/<libdir>/pkgconfig" ;;
esac
for f in "$root/include/prunus/plugin.h" "$root/include/prunus/prunus.h" "$root/bin/prunus" \
         "$libdir/prunus/plugins/prunus-magnitude.so" "$libdir/prunus/plugins/prunus-weight.so" \
         "$libdir/prunus/plugins/prunus-finetune.so" "$pcdir/prunus.pc"; do
  [ -e "$f" ] || fail "not installed: $f"
done
# The broken loader fixtures are never installed.
# (grep without -q reads all its input: under pipefail an early exit would make the
# writer die of SIGPIPE and the pipeline fail whatever grep found)
if find "$dest" -name 'prunus-broken-*' | grep . > /dev/null; then fail "a broken fixture was installed"; fi

# ---------------------------------------------------------------------------
# 2. The installed binary finds its own libprunus: RUNPATH relative to the binary,
#    resolved with LD_LIBRARY_PATH unset, never into the build tree.
prunus=$root/bin/prunus
runpath=$(readelf -d "$prunus" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p;s/.*(RPATH).*\[\(.*\)\]/\1/p')
rel_libdir=${libdir#"$root"/}
[ "$runpath" = "\$ORIGIN/../$rel_libdir" ] ||
  fail "installed prunus has RUNPATH '$runpath', expected '\$ORIGIN/../$rel_libdir'"
resolved=$(ldd "$prunus" | sed -n 's/^[[:space:]]*libprunus\.so[^ ]* => \([^ ]*\) .*/\1/p')
[ -n "$resolved" ] || { ldd "$prunus"; fail "ldd: libprunus not found without LD_LIBRARY_PATH"; }
[ "$(realpath "$(dirname "$resolved")")" = "$(realpath "$libdir")" ] ||
  fail "the installed prunus loads $resolved, not the installed $libdir/libprunus"
case $(realpath "$resolved") in
  "$(realpath "$build")"/*) fail "the installed prunus loads the build tree's $resolved" ;;
esac
"$prunus" --version >"$tmp/version.out" 2>&1 || { cat "$tmp/version.out"; fail "prunus --version"; }
echo "installed under $root; prunus RUNPATH $runpath -> $resolved"

# ---------------------------------------------------------------------------
# 3. pkg-config, pointed at the DESTDIR copy (its .pc files name the real prefix).
sed -i "s|^prefix=.*|prefix=$root|" "$pcdir"/prunus*.pc
export PKG_CONFIG_PATH=$pcdir
cflags=$(echo $(pkg-config --cflags prunus-plugin))  # word-split: drops the trailing space
[ "$cflags" = "-I$root/include" ] || fail "pkg-config --cflags prunus-plugin = '$cflags'"
plugindir=$(pkg-config --variable=plugindir prunus-plugin)
[ "$plugindir" = "$libdir/prunus/plugins" ] || fail "plugindir = '$plugindir'"
[ "$(pkg-config --variable=abi_version prunus-plugin)" = 1 ] || fail "abi_version"

# ---------------------------------------------------------------------------
# 4. Each example, copied out of the source tree (it must need nothing else) and
#    built with Meson against the installed header only, with this build's
#    sanitizers so that an ASan build checks the examples' memory use too.
sanitize=$("$python" - "$meson" "$build" <<'EOF'
import json, subprocess, sys
opts = json.loads(subprocess.run([sys.argv[1], "introspect", sys.argv[2], "--buildoptions"],
                                 capture_output=True, text=True, check=True).stdout)
print(next((o["value"] for o in opts if o["name"] == "b_sanitize"), "none"))
EOF
)
build_example() {  # build_example KIND -> $tmp/build-KIND
  local kind=$1
  cp -r "$src/examples/custom-$kind" "$tmp/src-$kind"
  "$meson" setup "$tmp/build-$kind" "$tmp/src-$kind" -Db_sanitize="$sanitize" \
    >"$tmp/setup-$kind.log" 2>&1 || { cat "$tmp/setup-$kind.log"; fail "meson setup of examples/custom-$kind"; }
  "$meson" compile -C "$tmp/build-$kind" >"$tmp/compile-$kind.log" 2>&1 ||
    { cat "$tmp/compile-$kind.log"; fail "building examples/custom-$kind"; }
  if grep -i "warning" "$tmp/compile-$kind.log" > /dev/null; then
    cat "$tmp/compile-$kind.log"; fail "examples/custom-$kind compiles with warnings"
  fi
  grep -q -- "-I$root/include" "$tmp/build-$kind/compile_commands.json" ||
    fail "examples/custom-$kind was not compiled against the installed headers"
}
build_example criterion
build_example granularity
build_example retrain
for so in criterion/prunus-layer-normalized.so criterion/prunus-wanda-act.so \
          granularity/prunus-n-of-m.so retrain/prunus-early-stop.so; do
  [ -f "$tmp/build-$so" ] || fail "$tmp/build-$so was not built"
done
echo "built the examples (b_sanitize=$sanitize)"

# No $libdir/prunus/plugins here: the staged libprunus finds its shipped plugins
# beside itself, not under the configured prefix (which holds no install).
export PRUNUS_PLUGIN_PATH=$tmp/build-criterion:$tmp/build-granularity:$tmp/build-retrain
export OPENBLAS_NUM_THREADS=1
"$prunus" plugins >"$tmp/plugins.out" 2>&1 || { cat "$tmp/plugins.out"; fail "prunus plugins"; }
for row in "criterion layer-normalized criterion/prunus-layer-normalized.so" \
           "criterion wanda-act criterion/prunus-wanda-act.so" \
           "granularity n-of-m granularity/prunus-n-of-m.so" \
           "retrain early-stop retrain/prunus-early-stop.so"; do
  set -- $row
  grep -Eq "^$1 +$2 +1\.0\.0 " "$tmp/plugins.out" ||
    { cat "$tmp/plugins.out"; fail "prunus plugins does not list $1 $2"; }
  grep -q "$tmp/build-$3" "$tmp/plugins.out" || fail "prunus plugins does not show $tmp/build-$3"
done
grep -A1 -E "^criterion +magnitude " "$tmp/plugins.out" | grep -q " $libdir/prunus/plugins/prunus-magnitude.so$" ||
  { cat "$tmp/plugins.out"; fail "the staged prunus does not find its shipped plugins beside libprunus"; }
# Each plugin once: an installed prunus does not also search its build tree.
dups=$(awk '/^(criterion|granularity|retrain) / {print $1, $2}' "$tmp/plugins.out" | sort | uniq -d)
[ -z "$dups" ] || { cat "$tmp/plugins.out"; fail "prunus plugins lists more than once: $dups"; }
if grep -F -- "$build" "$tmp/plugins.out" > /dev/null; then fail "the installed prunus searched $build"; fi

# The README's build without Meson: the compiler and pkg-config alone.
mkdir "$tmp/cc"
san_flags=()
[ "$sanitize" = none ] || san_flags=(-fsanitize="$sanitize" -fno-omit-frame-pointer)
cc -std=c11 -Wall -Wextra -Werror "${san_flags[@]}" -shared -fPIC -O2 $(pkg-config --cflags prunus-plugin) \
  -o "$tmp/cc/prunus-n-of-m.so" "$src/examples/custom-granularity/n_of_m.c" -lm ||
  fail "cc with pkg-config --cflags prunus-plugin could not build n_of_m.c"
# And `meson install` of an example: into pkg-config's plugindir, next to the shipped ones.
"$meson" install -C "$tmp/build-retrain" >"$tmp/install-retrain.log" 2>&1 ||
  { cat "$tmp/install-retrain.log"; fail "meson install of examples/custom-retrain"; }
[ -f "$plugindir/prunus-early-stop.so" ] || fail "early-stop was not installed into $plugindir"

# An older host: the examples read their settings through get_int_range /
# get_double_range only where the host's services table holds them (revision 2,
# PRUNUS_HOST_HAS), else through get_int / get_double and their own check. This
# host hands out a table of revision 1's size, then a full one, and records which
# getters were called and the error the plugin set.
cat >"$tmp/oldhost.c" <<'CSRC'
#include <prunus/plugin.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char **kv; /* KEY=VALUE settings from argv */
static int n_plain, n_range;
static char message[512];
static const char *lookup(const char *key) {
  for (char **p = kv; *p; p++)
    if (!strncmp(*p, key, strlen(key)) && (*p)[strlen(key)] == '=') return *p + strlen(key) + 1;
  return NULL;
}
static void set_error(PrunusHost *h, const char *fmt, ...) {
  (void)h;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
}
static void log_line(PrunusHost *h, PrunusLogLevel l, const char *fmt, ...) { (void)h, (void)l, (void)fmt; }
static int get_int(PrunusHost *h, const char *key, int64_t defval, int64_t *out) {
  (void)h;
  n_plain++;
  *out = lookup(key) ? atoll(lookup(key)) : defval;
  return 0;
}
static int get_double(PrunusHost *h, const char *key, double defval, double *out) {
  (void)h;
  n_plain++;
  *out = lookup(key) ? atof(lookup(key)) : defval;
  return 0;
}
static int get_int_range(PrunusHost *h, const char *key, int64_t defval, int64_t min,
                         int64_t max, int64_t *out) {
  n_range++;
  *out = lookup(key) ? atoll(lookup(key)) : defval;
  if (lookup(key) && (*out < min || *out > max)) return set_error(h, "range %s", key), -1;
  return 0;
}
static int get_double_range(PrunusHost *h, const char *key, double defval, double min,
                            double max, double *out) {
  n_range++;
  *out = lookup(key) ? atof(lookup(key)) : defval;
  if (lookup(key) && !(*out >= min && *out <= max)) return set_error(h, "range %s", key), -1;
  return 0;
}
static int train(PrunusHost *h, int e, double lr, double o, int t) {
  (void)h, (void)e, (void)lr, (void)o, (void)t;
  return 0;
}
static int evaluate(PrunusHost *h, double *l, double *a) { (void)h; *l = *a = 0; return 0; }
static double pretrain_lr(PrunusHost *h) { (void)h; return 0.1; }
int main(int argc, char **argv) { /* oldhost SO r1|full KEY=VALUE... */
  if (argc < 3) return 2;
  void *so = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  PrunusPluginDescribeFn describe =
      so ? (PrunusPluginDescribeFn)dlsym(so, PRUNUS_PLUGIN_ENTRY_SYMBOL) : NULL;
  if (!describe) return fprintf(stderr, "%s\n", dlerror()), 2;
  kv = argv + 3;
  PrunusHostServices svc = {.abi_version = PRUNUS_PLUGIN_ABI_VERSION, .log = log_line,
      .set_error = set_error, .get_int = get_int, .get_double = get_double, .train = train,
      .evaluate = evaluate, .pretrain_lr = pretrain_lr, .revision = 2,
      .get_int_range = get_int_range, .get_double_range = get_double_range};
  svc.size = strcmp(argv[2], "r1") ? sizeof svc : offsetof(PrunusHostServices, revision);
  void *state = NULL;
  const PrunusPluginDesc *d = describe(0);
  int rc = d->create((PrunusHost *)&svc, &svc, &state);
  if (rc == 0 && d->destroy) d->destroy(state);
  printf("create=%d plain=%d range=%d error=%s\n", rc, n_plain, n_range, message);
  dlclose(so);
  return 0;
}
CSRC
cc -std=c11 -Wall -Wextra -Werror "${san_flags[@]}" $(pkg-config --cflags prunus-plugin) \
  -o "$tmp/oldhost" "$tmp/oldhost.c" -ldl || fail "oldhost.c did not compile against the installed plugin.h"
expect_host() {  # expect_host EXPECTED SO r1|full KEY=VALUE...
  local want=$1 got
  shift
  got=$("$tmp/oldhost" "$@") || fail "oldhost $*"
  [ "$got" = "$want" ] || fail "oldhost $*: '$got', expected '$want'"
}
nm_so=$tmp/build-granularity/prunus-n-of-m.so
es_so=$tmp/build-retrain/prunus-early-stop.so
expect_host "create=-1 plain=2 range=0 error=n = 4 is out of range: must be in [1, 3]" "$nm_so" r1 m=4 n=4
expect_host "create=0 plain=2 range=0 error=" "$nm_so" r1 m=8
expect_host "create=-1 plain=0 range=2 error=range n" "$nm_so" full m=4 n=4
expect_host "create=-1 plain=1 range=0 error=max_epochs = 0 is out of range: must be in [1, 1000]" \
  "$es_so" r1 max_epochs=0
expect_host "create=-1 plain=6 range=0 error=lr = -1 is out of range: must be in [0, inf]" "$es_so" r1 lr=-1
expect_host "create=0 plain=0 range=6 error=" "$es_so" full
echo "the examples use the range-checked getters only where the host has them"

# ---------------------------------------------------------------------------
# 5. A tiny dataset (8x8 images, class = the brighter quadrant, under noise that
#    keeps the accuracy below 1 so that retraining has something to recover).
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
                v = (150 if q == k else 100) + rng.gauss(0, 120)
                pixels.append(max(0, min(255, round(v))))
    with open(f"{d}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 8, 8) + pixels)
    with open(f"{d}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels)
write("train", 600, 1)
write("t10k", 200, 2)
EOF
# The shared part of every config: data, a 64-16-4 network, 2 epochs of pretraining.
cat >"$data/base.cfg" <<'EOF'
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
EOF
# config NAME PRUNE_GROUP [EXTRA]: base.cfg + a prune group
config() {
  { echo "name = \"$1\";"; cat "$data/base.cfg"; echo "prune = { latency = { batches = [1]; seconds = 0.001; }; $2 };"; echo "${3:-}"; } >"$data/$1.cfg"
}
run() {  # run NAME [env...]: the installed prunus on $data/NAME.cfg into $tmp/NAME
  local name=$1
  shift
  local status=0
  env "$@" "$prunus" run "$data/$name.cfg" -o "$tmp/$name" --threads 1 --quiet >"$tmp/$name.out" 2>&1 || status=$?
  [ "$status" = 0 ] || { cat "$tmp/$name.out"; fail "prunus run $name.cfg exited $status"; }
}
# safetensors reader for the checks (stdlib only): {name: (shape, values)}
cat >"$tmp/st.py" <<'EOF'
import json, struct
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name != "__metadata__":
            a, b = t["data_offsets"]
            out[name] = (t["shape"], struct.unpack(f"<{(b - a) // 4}f", data[a:b]))
    return out
def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]
EOF

# ---------------------------------------------------------------------------
# 6. layer-normalized (weights only) with the built-in weight and finetune.
config criterion 'schedule = { rounds = 2; amount = 0.5; };
  criterion = { plugin = "layer-normalized"; power = 2.0; };
  granularity = { plugin = "weight"; };
  retrain = { plugin = "finetune"; epochs = 1; };'
run criterion
"$python" - "$tmp/criterion/summary.json" <<'EOF' || fail "layer-normalized: summary.json"
import json, sys
rounds = json.load(open(sys.argv[1]))["experiments"][0]["rounds"]
sp = [r["sparsity"] for r in rounds]
# 64*16 + 16*4 = 1088 prunable weights, half of what remains per round: 544, then 272 more
assert len(sp) == 3 and sp[0] == 0 and abs(sp[1] - 544 / 1088) < 1e-6 and abs(sp[2] - 816 / 1088) < 1e-6, sp
print("layer-normalized: sparsity by round", sp)
EOF

# ---------------------------------------------------------------------------
# 7. wanda-act (observe() on activations) against magnitude, one round at 50% per
#    layer from the same pretrained network. Layer 1 reads the network input, so
#    wanda ranks it by |w| like magnitude; layer 3 ranks |w| * RMS(input), checked
#    here from the RMS values wanda logs under PRUNUS_DEBUG.
config wanda 'schedule = { rounds = 1; amount = 0.5; scope = "layer"; };
  criterion = { plugin = "wanda-act"; calib_batches = 2; calib_batch = 64; };
  granularity = { plugin = "weight"; };
  retrain = { plugin = "finetune"; epochs = 0; };' \
  'experiments = ( { name = "wanda"; }, { name = "magnitude"; prune = { criterion = { plugin = "magnitude"; }; }; } );'
run wanda PRUNUS_DEBUG=1
grep -q "^\[criterion wanda-act\] layer 1 reads the network input" "$tmp/wanda.out" ||
  { cat "$tmp/wanda.out"; fail "wanda: no note about layer 1"; }
"$python" - "$tmp" <<'EOF' || { cat "$tmp/wanda.out"; fail "wanda"; }
import re, sys
sys.path.insert(0, sys.argv[1])
from st import load, f32
t = sys.argv[1]
rms = [float(x) for x in re.search(r"^\[criterion wanda-act\] layer 3 input rms: (.*)$",
                                   open(f"{t}/wanda.out").read(), re.M).group(1).split()]
assert len(rms) == 16 and all(r >= 0 for r in rms), rms
w0 = load(f"{t}/wanda/wanda/round-00.safetensors")
wa, mg = load(f"{t}/wanda/wanda/round-01.safetensors"), load(f"{t}/wanda/magnitude/round-01.safetensors")
assert w0["1.weight"][1] == load(f"{t}/wanda/magnitude/round-00.safetensors")["1.weight"][1]
pruned = lambda ck, k: {i for i, m in enumerate(ck[k][1]) if m == 0}
assert len(pruned(wa, "1.mask")) == 512 and len(pruned(wa, "3.mask")) == 32
assert pruned(wa, "1.mask") == pruned(mg, "1.mask"), "layer 1: wanda should rank by |w| there"
score = [f32(abs(w0["3.weight"][1][u * 16 + j]) * rms[j]) for u in range(4) for j in range(16)]
lowest = set(sorted(range(64), key=lambda i: (score[i], i))[:32])
assert pruned(wa, "3.mask") == lowest, (sorted(pruned(wa, "3.mask")), sorted(lowest))
diff = len(pruned(wa, "3.mask") ^ pruned(mg, "3.mask")) // 2
assert diff > 0, "layer 3: wanda chose the same weights as magnitude"
print(f"wanda: layer 1 as magnitude, layer 3 = the 32 lowest |w|*rms ({diff} differ from magnitude)")
EOF

# ---------------------------------------------------------------------------
# 8. n-of-m (2:4, the cc build, found through the config's plugin_path) with
#    early-stop (installed into the plugin folder). 30% per round: round 1 removes
#    326 of 1088; round 2 asks for 229 but 2:4 leaves room for 544 - 326 = 218;
#    round 3 finds no room at all.
config nm 'schedule = { rounds = 3; amount = 0.3; };
  criterion = { plugin = "magnitude"; };
  granularity = { plugin = "n-of-m"; n = 2; m = 4; };
  retrain = { plugin = "early-stop"; max_epochs = 4; warmup_epochs = 1; patience = 1; tolerance = 0.01; };' \
  "plugin_path = \"$tmp/cc\";"
PRUNUS_PLUGIN_PATH=$plugindir "$prunus" plugins "$data/nm.cfg" >"$tmp/nm-plugins.out" 2>&1 ||
  { cat "$tmp/nm-plugins.out"; fail "prunus plugins nm.cfg"; }
grep -A1 -E "^granularity +n-of-m " "$tmp/nm-plugins.out" | grep -q " $tmp/cc/prunus-n-of-m.so$" &&
  grep -A1 -E "^retrain +early-stop " "$tmp/nm-plugins.out" | grep -q " $plugindir/prunus-early-stop.so$" ||
  { cat "$tmp/nm-plugins.out"; fail "nm.cfg does not find n-of-m in $tmp/cc and early-stop in $plugindir"; }
# A setting out of range fails before any training, with the host's message.
status=0
PRUNUS_PLUGIN_PATH=$plugindir "$prunus" run "$data/nm.cfg" -o "$tmp/nm-bad" --set prune.granularity.n=4 \
  >"$tmp/nm-bad.out" 2>&1 || status=$?
[ "$status" = 1 ] && grep -qF "prune.granularity plugin 'n-of-m' ($tmp/cc/prunus-n-of-m.so): create() failed: --set prune.granularity.n: key 'prune.granularity.n' = 4 is out of range: must be in [1, 3]" "$tmp/nm-bad.out" ||
  { cat "$tmp/nm-bad.out"; fail "n = 4: expected exit 1 and the range error, got $status"; }
run nm PRUNUS_PLUGIN_PATH="$plugindir" PRUNUS_DEBUG=1
grep -q "^\[granularity n-of-m\]" "$tmp/nm.out" || fail "n-of-m logged nothing"
"$python" - "$tmp" <<'EOF' || { cat "$tmp/nm.out"; fail "n-of-m + early-stop"; }
import json, re, sys
sys.path.insert(0, sys.argv[1])
from st import load
t = sys.argv[1]
out = open(f"{t}/nm.out").read()
rounds = json.load(open(f"{t}/nm/summary.json"))["experiments"][0]["rounds"]
sp = [r["sparsity"] for r in rounds]
want = [0, 326 / 1088, 544 / 1088, 544 / 1088]
assert len(sp) == 4 and all(abs(a - b) < 1e-6 for a, b in zip(sp, want)), sp
assert "[granularity n-of-m] removed 218 of the 229 weights asked for" in out, out
assert "[granularity n-of-m] removed 0 of the 163 weights asked for" in out, out

# The plan of rounds 1 and 2, replayed: one global ranking of |w| (magnitude) over
# both layers by (score, layer, index), taking a weight while its group of 4 has
# fewer than 2 pruned.
ck = [load(f"{t}/nm/nm/round-{r:02d}.safetensors") for r in range(4)]
layers = [("1", 16, 64), ("3", 4, 16)]
for r, asked in ((1, 326), (2, 229)):
    before, after = ck[r - 1], ck[r]
    cand = sorted((abs(before[f"{n}.weight"][1][i]), li, i) for li, (n, u, f) in enumerate(layers)
                  for i in range(u * f) if before[f"{n}.mask"][1][i] != 0)
    room = {}
    for li, (n, u, f) in enumerate(layers):
        for i in range(u * f):
            room[li, i // 4] = room.get((li, i // 4), 2) - (before[f"{n}.mask"][1][i] == 0)
    chosen = set()
    for s, li, i in cand:
        if len(chosen) == asked:
            break
        if room[li, i // 4] > 0:
            room[li, i // 4] -= 1
            chosen.add((li, i))
    got = {(li, i) for li, (n, u, f) in enumerate(layers) for i in range(u * f)
           if before[f"{n}.mask"][1][i] != 0 and after[f"{n}.mask"][1][i] == 0}
    assert got == chosen, f"round {r}: {len(got)} removed, replay {len(chosen)}"
# In the end exactly 2 of every 4 survive.
for n, u, f in layers:
    m = ck[3][f"{n}.mask"][1]
    assert all(sum(m[g:g + 4]) == 2 for g in range(0, u * f, 4)), n

# early-stop, replayed from metrics.jsonl: lr ramp, stopping rule and reason.
lines = [json.loads(l) for l in open(f"{t}/nm/metrics.jsonl")]
logs = re.findall(r"^\[retrain early-stop\] round (\d+): val accuracy ([0-9.]+) after the prune, "
                  r"([0-9.]+) after (\d+) epochs? \((\w[\w ]*)\)$", out, re.M)
assert [int(l[0]) for l in logs] == [1, 2, 3], logs
debug = re.findall(r"^\[retrain early-stop\] round (\d+) epoch (\d+): ", out, re.M)
before, reasons = None, []
for r, after_prune, final, n, why in logs:
    r, n = int(r), int(n)
    ep = [l for l in lines if l["round"] == r]
    assert len(ep) == n and sum(1 for d in debug if int(d[0]) == r) == n, (r, n, len(ep))
    acc = best = float(after_prune)
    stale, e = 0, 0
    while True:
        if before is not None and acc >= before - 0.01:
            expect = "recovered"; break
        if stale >= 1:
            expect = "no gain"; break
        if e == 4:
            expect = "budget spent"; break
        lr = 0.05 * (e + 1) / 2 if e < 1 else 0.05
        assert abs(ep[e]["lr"] - lr) < 1e-12 and ep[e]["epoch"] == 1, (r, e, ep[e])
        acc = ep[e]["val_accuracy"]
        e += 1
        if acc > best + 0.001:
            best, stale = acc, 0
        elif e > 1:
            stale += 1
    assert (e, expect) == (n, why) and abs(acc - float(final)) < 1e-6, (r, e, expect, n, why)
    assert abs(rounds[r]["val_accuracy"] - acc) < 1e-6, (r, rounds[r]["val_accuracy"], acc)
    before = acc
    reasons.append(f"round {r}: {n} epochs ({why})")
print("n-of-m: sparsity", [round(s, 4) for s in sp], "exact 2:4; early-stop:", "; ".join(reasons))
EOF
echo "ok: the out-of-tree examples ran against the installed prunus"
