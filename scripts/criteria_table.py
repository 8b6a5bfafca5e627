#!/usr/bin/env python3
"""criteria_table.py: turns the summary.json of configs/criteria.cfg into a
Markdown table of test accuracy per criterion and sparsity level."""
import json
import sys


def main(path):
    d = json.load(open(path))
    exps = {e["name"]: e for e in d["experiments"]}
    dense = d["experiments"][0]["rounds"][0]["test_accuracy"]
    out = ["# Criteria on LeNet-300-100 / Fashion-MNIST", ""]
    out.append("Made by `scripts/criteria-table.sh` from `configs/criteria.cfg` (prunus %s): "
               "one shared pretraining (the config's train group), then prune step by step to each "
               "level, fine-tuning 2 epochs at lr 0.01 after each step; seed %d, one run each. "
               "Cells are test accuracy (10,000 images); **bold** = best of the column, "
               "_italic_ = below `random`. Dense network: %.4f." % (d["prunus_version"], d["experiments"][0]["seed"], dense))
    for gran, label in (("weight", "Weight pruning (unstructured): fraction of all weights removed"),
                        ("neuron", "Neuron pruning (structured): fraction of hidden neurons removed")):
        rows = [(n[len(gran) + 1:], e) for n, e in exps.items() if n.startswith(gran + "-")]
        if not rows:
            continue
        levels = [r for r in rows[0][1]["rounds"][1:]]
        names = ["%.0f%%" % (100 * lv) for lv in
                 ([0.5, 0.8, 0.9, 0.95] if gran == "weight" else [0.25, 0.5, 0.75])][:len(levels)]
        out += ["", "## " + label, ""]
        head = "| criterion | " + " | ".join(names) + " |"
        if gran == "neuron":
            head = "| criterion | " + " | ".join(names) + " | weights removed at the last level |"
        out.append(head)
        out.append("|---" * (head.count("|") - 1) + "|")
        acc = {c: [r["test_accuracy"] for r in e["rounds"][1:]] for c, e in rows}
        best = [max(a[i] for a in acc.values()) for i in range(len(names))]
        floor = acc.get("random")
        for c, e in rows:
            cells = []
            for i, a in enumerate(acc[c]):
                s = "%.4f" % a
                if a == best[i]:
                    s = "**%s**" % s
                elif floor and c != "random" and a < floor[i]:
                    s = "_%s_" % s
                cells.append(s)
            line = "| %s | %s |" % (c, " | ".join(cells))
            if gran == "neuron":
                line = line[:-1] + "| %.3f |" % e["rounds"][-1]["sparsity"]
            out.append(line)
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
