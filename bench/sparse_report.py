#!/usr/bin/python3
"""sparse_report.py: the tables of bench/sparse_engines' JSON (argv[1]): engine
latencies at 90%/95%, sparse-vs-dense ratios and the crossover sparsity per batch
size, the neuron-pruned `shrunk` check (with the layers dense/shrunk padded), and
the exported C file's flash."""
import json
import sys

res = json.load(open(sys.argv[1]))
rows = res["rows"]


def lat(model, s, engine, B, T):
    for r in rows:
        if r["model"] == model and abs(r["sparsity"] - s) < 1e-6 and r["engine"] == engine \
                and r["batch"] == B and r["threads"] == T:
            return r
    return None


mag = sorted({r["sparsity"] for r in rows if r["model"] == "magnitude"})
batches = sorted({r["batch"] for r in rows})
print(f"LeNet-300-100, magnitude-pruned per layer; sparse kernels: {res['kernels']}; "
      f"latency in us (lowest of 3 window medians, {res['seconds_per_measurement']} s per "
      f"measurement)\n")
print("| sparsity | threads | batch | dense | masked | sparse | shrunk | auto (picks) | dense/sparse |")
print("|---|---|---|---|---|---|---|---|---|")
for s in (0.9, 0.95):
    for T in (1, 2):
        for B in batches:
            g = {e: lat("magnitude", s, e, B, T) for e in ("dense", "masked", "sparse", "shrunk", "auto")}
            print(f"| {s:.2f} | {T} | {B} | " + " | ".join(f"{g[e]['latency_us']:.1f}" for e in
                  ("dense", "masked", "sparse", "shrunk")) +
                  f" | {g['auto']['latency_us']:.1f} ({g['auto']['auto']}) | "
                  f"**{g['dense']['latency_us'] / g['sparse']['latency_us']:.2f}x** |")

print("\nSpeed-up of `sparse` over `dense` (dense/sparse latency) by sparsity, and the crossover "
      "(lowest sparsity where sparse wins, linear interpolation):\n")
print("| threads | batch | " + " | ".join(f"{s:.2f}" for s in mag) + " | crossover |")
print("|---|---|" + "---|" * len(mag) + "---|")
for T in (1, 2):
    for B in batches:
        ratios = [lat("magnitude", s, "dense", B, T)["latency_us"] / lat("magnitude", s, "sparse", B, T)["latency_us"]
                  for s in mag]
        cross = "none"
        for i in range(1, len(mag)):
            if ratios[i - 1] < 1 <= ratios[i]:
                f = (1 - ratios[i - 1]) / (ratios[i] - ratios[i - 1])
                cross = f"{mag[i - 1] + f * (mag[i] - mag[i - 1]):.2f}"
        if ratios[0] >= 1:
            cross = f"<= {mag[0]:.2f}"
        print(f"| {T} | {B} | " + " | ".join(f"{r:.2f}" for r in ratios) + f" | {cross} |")

n = res["neurons30"]
fr = n["shrunk_flops"] / n["dense_flops"]
print(f"\nNeuron-pruned (30% of hidden neurons kept): FLOPs ratio {fr:.3f}\n")
print("| threads | batch | dense | shrunk | dense x FLOPs ratio | shrunk / (dense x ratio) | "
      "padded (layer:units+rows) dense; shrunk |")
print("|---|---|---|---|---|---|---|")
s_np = next(r["sparsity"] for r in rows if r["model"] == "neurons30")
for T in (1, 2):
    for B in batches:
        dr = lat("neurons30", s_np, "dense", B, T)
        sr = lat("neurons30", s_np, "shrunk", B, T)
        d, s = dr["latency_us"], sr["latency_us"]
        print(f"| {T} | {B} | {d:.1f} | {s:.1f} | {d * fr:.1f} | **{s / (d * fr):.2f}** | "
              f"{dr.get('padding', '-')}; {sr.get('padding', '-')} |")

print("\nExported C (`prunus export --format c`): flash = weights + biases + index arrays\n")
print("| sparsity | flash bytes | dense bytes | ratio |")
print("|---|---|---|---|")
for tag, f in sorted(res["files"].items()):
    print(f"| {int(tag) / 100:.2f} | {f['c_flash_bytes']:.0f} | {f['dense_bytes']:.0f} | "
          f"**{100 * f['c_flash_bytes'] / f['dense_bytes']:.1f}%** |")
