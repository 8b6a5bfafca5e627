#!/usr/bin/python3
"""export_check.py: a (shrunk) checkpoint exported to C and to PyTorch predicts what
prunus predicts, on all 10,000 Fashion-MNIST test images (issue 13's export target for
the channel-pruned ResNet-20; tests/infer/test_export.c checks ResNet-8 the same way).

  prunus:  bench/predict (the checkpoint's model in evaluation mode, prunus_model_forward)
  C:       `prunus export CKPT --format c`, compiled with `cc -std=c99 -O2 -Wall -Werror`
           and a driver that normalises the raw pixels itself (prunus_model_normalize)
           and writes prunus_model_logits
  PyTorch: `prunus export CKPT --format safetensors` and its OUT.py, loaded with
           load_state_dict(strict=True) in /usr/bin/python3, eval mode, the pixels
           normalised as OUT.py's INPUT_* say

Prints, for C and PyTorch: predictions agreeing with prunus's (k/10000), the largest
|logit difference| and prunus's test accuracy. Exits 1 when a prediction differs.

Usage: export_check.py [--build-dir build-bench] [--checkpoint CKPT | --run DIR] [--keep DIR]
--run DIR takes the experiment's last round-NN.safetensors. With neither, a small
ResNet-20 structured run is made first (as bench/structured_latency.py makes it).
"""
import argparse
import glob
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
IMAGES = os.path.join(DATA, "t10k-images-idx3-ubyte.gz")
LABELS = os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")

DRIVER = r"""#include <stdio.h>
#include <stdlib.h>
#include "prunus_model.h"
/* drv IN OUT N: N raw images (uint8) in, N x K float logits out */
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  int n = atoi(argv[3]);
  FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
  if (!in || !out) return 3;
  static uint8_t u[PRUNUS_MODEL_INPUT_SIZE];
  static float x[PRUNUS_MODEL_INPUT_SIZE], logits[PRUNUS_MODEL_N_CLASSES];
  for (int i = 0; i < n; i++) {
    if (fread(u, 1, sizeof u, in) != sizeof u) return 4;
    prunus_model_normalize(u, x);
    prunus_model_logits(x, logits);
    if (fwrite(logits, sizeof(float), PRUNUS_MODEL_N_CLASSES, out) != PRUNUS_MODEL_N_CLASSES)
      return 5;
  }
  return fclose(out) == 0 ? 0 : 6;
}
"""


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def read_f32(path, k):
    with open(path, "rb") as f:
        raw = f.read()
    vals = struct.unpack("<%df" % (len(raw) // 4), raw)
    return [vals[i:i + k] for i in range(0, len(vals), k)]


def argmax(row):
    return max(range(len(row)), key=lambda j: row[j])


def compare(name, got, want, labels):
    agree = sum(argmax(g) == argmax(w) for g, w in zip(got, want))
    diff = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
    scale = max(abs(v) for w in want for v in w)
    acc = sum(argmax(g) == y for g, y in zip(got, labels)) / len(labels)
    print("%-8s predictions agree with prunus %5d/%d; max |logit diff| %.3g (logits up to %.3g); "
          "accuracy %.4f" % (name, agree, len(want), diff, scale, acc))
    return agree == len(want), {"agree": agree, "n": len(want), "max_logit_diff": diff,
                                "accuracy": acc}


TORCH_SIDE = r"""
import importlib.util, struct, sys, torch
py, st, images, n, out = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("exported", py)
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)
torch.set_num_threads(1)
net = gen.PrunusNet()
net.load_state_dict(gen.load_safetensors(st), strict=True)
net.eval()
with open(images, "rb") as f:
    u = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).float()
x = u.reshape(int(n), *[int(v) for v in gen.ARCHITECTURE.split("|")[0].split("x")]) / 255.0
if gen.INPUT_NORMALIZE == "standard":
    x = (x - gen.INPUT_MEAN) / gen.INPUT_STD
with torch.inference_mode():
    y = torch.cat([net(x[i:i + 500]) for i in range(0, x.shape[0], 500)])
with open(out, "wb") as f:
    f.write(y.contiguous().numpy().tobytes())
print(torch.__version__)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--checkpoint")
    ap.add_argument("--run", help="a `prunus run` experiment folder: its last round")
    ap.add_argument("--keep", help="write the exports and logits here (default: a temp dir)")
    ap.add_argument("--json")
    args = ap.parse_args()
    build = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(ROOT, args.build_dir)
    prunus = os.path.join(build, "cli", "prunus")
    tmp = tempfile.TemporaryDirectory()
    work = args.keep or tmp.name
    os.makedirs(work, exist_ok=True)
    ckpt = args.checkpoint
    if not ckpt:
        run_dir = args.run
        if not run_dir:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import structured_latency
            run_dir = structured_latency.make_run(prunus, os.path.join(work, "run"))
        ckpt = sorted(glob.glob(os.path.join(run_dir, "round-[0-9][0-9].safetensors")))[-1]
    (n, h, w), pixels = read_idx(IMAGES)
    _, labels = read_idx(LABELS)
    raw = os.path.join(work, "in.bin")
    with open(raw, "wb") as f:
        f.write(pixels)

    # prunus
    want_path = os.path.join(work, "prunus.f32")
    info = json.loads(subprocess.run([os.path.join(build, "bench", "predict"), ckpt, IMAGES, LABELS,
                                      want_path], check=True, capture_output=True,
                                     text=True).stdout)
    K = info["classes"]
    want = read_f32(want_path, K)
    print("checkpoint %s: %d test images, %d classes" % (ckpt, n, K))
    ok, report = True, {"checkpoint": ckpt}

    # C
    cdir = os.path.join(work, "c")
    subprocess.run([prunus, "export", ckpt, "--format", "c", "-o", cdir], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(cdir, "driver.c"), "w") as f:
        f.write(DRIVER)
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Werror", "-o", "drv", "driver.c",
                    "prunus_model.c"], cwd=cdir, check=True)
    c_out = os.path.join(work, "c.f32")
    subprocess.run([os.path.join(cdir, "drv"), raw, c_out, str(n)], check=True)
    good, report["c"] = compare("C", read_f32(c_out, K), want, labels)
    ok &= good

    # PyTorch
    st = os.path.join(work, "exported.safetensors")
    subprocess.run([prunus, "export", ckpt, "--format", "safetensors", "-o", st], check=True,
                   stdout=subprocess.DEVNULL)
    t_out = os.path.join(work, "torch.f32")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    version = subprocess.run(["/usr/bin/python3", "-c", TORCH_SIDE, st[:-len(".safetensors")] + ".py",
                              st, raw, str(n), t_out], check=True, capture_output=True, text=True,
                             env=env).stdout.strip()
    good, report["torch"] = compare("PyTorch", read_f32(t_out, K), want, labels)
    report["torch"]["version"] = version
    ok &= good
    print("PyTorch %s, strict load of %s" % (version, os.path.basename(st)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
