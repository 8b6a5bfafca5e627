#!/usr/bin/python3
"""lottery_torch.py: the PyTorch side of bench/lottery_study.py, the lottery-ticket study
as PyTorch users run it with torch.nn.utils.prune: iterative global magnitude pruning of
LeNet-300-100 (global_unstructured, L1Unstructured, amount=0.2 of the remaining weights
per round, 10 rounds -> 0.8**10 = 10.7% kept; biases not pruned). Training: batch 128,
cross-entropy, plain SGD lr 0.1, seed S (--seed, default 0).
  pretrain : dense from init theta0 (torch.manual_seed(S)) for --pre epochs
  A  IMP-FT: prune -> fine-tune 1 epoch (continue from the current weights)
  B  LTH   : prune (by magnitude of the current trained weights) -> rewind
             surviving weights AND biases to theta0 -> retrain --lth-epochs
  C  random: mask of round k from B, fresh random init (seed 1000*(S+1)+k, same
             distribution), train --lth-epochs
Each training phase uses a shuffle generator seeded S at its start, so every phase
replays pretraining's sample order; --fresh-order seeds the n-th phase (pretraining is
phase 0, and keeps seed S) with S * 1000003 + n instead, a new order per phase, as
prunus does.
This is the shared peer study (peers/prune_pipeline.py with the helpers of its
common.py inlined), so the benchmark carries its own copy; the additions are --seed
and --fresh-order, and without them the study is the peer's (its seeds 0, 0, 1000+k).
Usage: OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N /usr/bin/python3 lottery_torch.py --threads N
       [--seed S] [--fresh-order]"""
import argparse, copy, gzip, json, os, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.prune as prune

DATA = "/usr/share/datasets/fashion-mnist"


def set_threads(n):
    """n > 0: torch.set_num_threads(n); n <= 0: leave torch's default."""
    if n > 0:
        torch.set_num_threads(n)
        torch.set_num_interop_threads(1)
    info = dict(
        torch_threads=torch.get_num_threads(),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "(unset)"),
        OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
        OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        torch_version=torch.__version__,
    )
    return info


def _idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fmnist(flat=True):
    """Returns (xtr, ytr, xte, yte) torch tensors; pixels float32 in [0,1]
    (uint8 / 255, no mean/std normalisation)."""
    xtr = _idx(f"{DATA}/train-images-idx3-ubyte.gz")
    ytr = _idx(f"{DATA}/train-labels-idx1-ubyte.gz")
    xte = _idx(f"{DATA}/t10k-images-idx3-ubyte.gz")
    yte = _idx(f"{DATA}/t10k-labels-idx1-ubyte.gz")
    def cv(x):
        t = torch.from_numpy(x.astype(np.float32) / 255.0)
        return t.reshape(len(x), -1) if flat else t.reshape(len(x), 1, 28, 28)
    return cv(xtr), torch.from_numpy(ytr.astype(np.int64)), cv(xte), torch.from_numpy(yte.astype(np.int64))


def lenet300(h1=300, h2=100):
    # PyTorch default init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    return nn.Sequential(nn.Linear(784, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 10))


def train_epoch(model, opt, xtr, ytr, bs, gen):
    """One epoch over a fresh permutation from `gen`; last partial batch kept
    (60000/128 -> 468 full batches + one of 96).  Returns wall seconds."""
    model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(xtr), generator=gen)
    for i in range(0, len(xtr), bs):
        idx = perm[i:i + bs]
        xb, yb = xtr[idx], ytr[idx]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(model, xte, yte, bs=1000):
    model.eval()
    correct = 0
    for i in range(0, len(xte), bs):
        correct += (model(xte[i:i + bs]).argmax(1) == yte[i:i + bs]).sum().item()
    return correct / len(xte)


ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, required=True)
ap.add_argument("--pre", type=int, default=10)
ap.add_argument("--rounds", type=int, default=10)
ap.add_argument("--ft-epochs", type=int, default=1)
ap.add_argument("--lth-epochs", type=int, default=3)
ap.add_argument("--lr", type=float, default=0.1)
ap.add_argument("--seed", type=int, default=0,
                help="init seed S, shuffle seed S, random re-init seeds 1000*(S+1)+k")
ap.add_argument("--fresh-order", action="store_true",
                help="a new sample order for every training phase, not pretraining's")
a = ap.parse_args()
print(json.dumps(set_threads(a.threads)))
xtr, ytr, xte, yte = load_fmnist(flat=True)

def linears(m):
    return [x for x in m if isinstance(x, nn.Linear)]

def sparsity(m):
    z = t = 0; per = []
    for l in linears(m):
        w = l.weight
        zz = (w == 0).sum().item(); z += zz; t += w.numel(); per.append(round(zz / w.numel(), 4))
    return round(z / t, 4), per

phases = 0  # training phases begun; pretraining is phase 0

def train(m, epochs, log):
    global phases
    opt = torch.optim.SGD(m.parameters(), lr=a.lr)
    seed = a.seed * 1000003 + phases if a.fresh_order and phases > 0 else a.seed
    phases += 1
    gen = torch.Generator().manual_seed(seed)
    accs, times = [], []
    for e in range(epochs):
        times.append(train_epoch(m, opt, xtr, ytr, 128, gen))
        accs.append(evaluate(m, xte, yte))
    return accs, times

T0 = time.perf_counter()
torch.manual_seed(a.seed)
model = lenet300()
theta0 = copy.deepcopy(model.state_dict())
pre_acc, pre_t = train(model, a.pre, None)
thetaT = copy.deepcopy(model.state_dict())
t_pre = time.perf_counter() - T0
print(json.dumps(dict(phase="pretrain", epochs=a.pre, acc_per_epoch=pre_acc, epoch_sec=[round(x, 3) for x in pre_t], wall=round(t_pre, 2))))

# ---- A: IMP with fine-tuning
tA = time.perf_counter()
mA = lenet300(); mA.load_state_dict(thetaT)
params = [(l, "weight") for l in linears(mA)]
for r in range(1, a.rounds + 1):
    t = time.perf_counter()
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.2)
    acc_p = evaluate(mA, xte, yte)
    accs, times = train(mA, a.ft_epochs, None)
    sp, per = sparsity(mA)
    print(json.dumps(dict(phase="IMP-FT", round=r, sparsity=sp, per_layer=per, acc_after_prune=acc_p,
                          acc_after_ft=accs[-1], ft_epoch_sec=[round(x, 3) for x in times], round_wall=round(time.perf_counter() - t, 3))))
wA = time.perf_counter() - tA
print(json.dumps(dict(phase="IMP-FT total", wall_rounds=round(wA, 2), wall_incl_pretrain=round(wA + t_pre, 2))))

# ---- B: lottery ticket with rewinding to theta0
tB = time.perf_counter()
mB = lenet300(); mB.load_state_dict(thetaT)
paramsB = [(l, "weight") for l in linears(mB)]
masks = []
init_w = [theta0[f"{i}.weight"] for i in (0, 2, 4)]
init_b = [theta0[f"{i}.bias"] for i in (0, 2, 4)]
for r in range(1, a.rounds + 1):
    t = time.perf_counter()
    prune.global_unstructured(paramsB, pruning_method=prune.L1Unstructured, amount=0.2)
    with torch.no_grad():
        for l, w0, b0 in zip(linears(mB), init_w, init_b):
            l.weight_orig.copy_(w0); l.bias.copy_(b0)
    masks.append([l.weight_mask.clone() for l in linears(mB)])
    accs, times = train(mB, a.lth_epochs, None)
    sp, per = sparsity(mB)
    print(json.dumps(dict(phase="LTH-rewind", round=r, sparsity=sp, per_layer=per, acc_per_epoch=accs,
                          epoch_sec=[round(x, 3) for x in times], round_wall=round(time.perf_counter() - t, 3))))
wB = time.perf_counter() - tB
print(json.dumps(dict(phase="LTH-rewind total", wall_rounds=round(wB, 2))))

# ---- C: random reinit control with the LTH masks
tC = time.perf_counter()
for r in range(1, a.rounds + 1):
    t = time.perf_counter()
    torch.manual_seed(1000 * (a.seed + 1) + r)
    mC = lenet300()
    for l, mk in zip(linears(mC), masks[r - 1]):
        prune.custom_from_mask(l, "weight", mk)
    accs, times = train(mC, a.lth_epochs, None)
    sp, per = sparsity(mC)
    print(json.dumps(dict(phase="random-reinit", round=r, sparsity=sp, acc_per_epoch=accs,
                          epoch_sec=[round(x, 3) for x in times], round_wall=round(time.perf_counter() - t, 3))))
wC = time.perf_counter() - tC
print(json.dumps(dict(phase="random-reinit total", wall_rounds=round(wC, 2), wall_everything=round(time.perf_counter() - T0, 2))))
