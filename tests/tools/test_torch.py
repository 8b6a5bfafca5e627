"""test_torch.py: prunus against PyTorch 1.13 on the same weights and inputs, both ways.

  torch -> prunus: tools/torch2prunus.py on torch_models.py's ResNet8, VggBn and Branches
  prunus -> torch: `prunus export --format safetensors` of prunus-made ResNet-8 (masked)
                   and VGG-BN (channel-pruned, so shrunk) and the generated module
  each: logits in eval mode and in train mode (batch statistics) and the running
  statistics that forward leaves, within 1e-4; two SGD steps (momentum, weight decay,
  masks) give the same parameters and running statistics within 1e-4; the round trip
  torch -> prunus -> export -> torch loads strictly and gives the same logits; bad input
  is refused, naming what is wrong, exit 1, nothing written.
Run by run_torch_test.sh (meson test torch): argv PRUNUS TORCH_PARITY SOURCE_ROOT.
Prints each check with its largest absolute difference."""

import copy
import glob
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import torch

PRUNUS, PARITY, ROOT = sys.argv[1:4]
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
import torch2prunus  # noqa: E402
import torch_models  # noqa: E402

TOL = 1e-4
TOOL = os.path.join(ROOT, "tools", "torch2prunus.py")
MODELS = os.path.join(ROOT, "tests", "tools", "torch_models.py")
DATA = "/usr/share/datasets/fashion-mnist"
HAVE_DATA = os.path.exists(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))
LR, MOMENTUM, WD, STEPS = 0.01, 0.9, 5e-4, 2
WORK = tempfile.mkdtemp(prefix="prunus-torch-")
failures = []


def path(*p):
    return os.path.join(WORK, *p)


# `prunus run` here checks what prunus accepts, not speed: latency at batch 1 only (batch
# 256 took 85% of such a run's time, and memcheck runs it 250 times slower)
LATENCY_B1 = ("--set", "prune.latency.batches=[1]")
# scripts/valgrind.sh: python3 is not traced, so prunus and torch-parity run under
# memcheck through this wrapper (its --error-exitcode makes an error a wrong exit status)
WRAPPER = shlex.split(os.environ.get("PRUNUS_TEST_CHILD_WRAPPER", ""))


def run(*cmd, expect=0):
    cmd = [str(c) for c in cmd]
    if cmd[0] in (PRUNUS, PARITY):
        cmd = WRAPPER + cmd
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != expect:
        raise AssertionError(f"{' '.join(map(str, cmd))}: exit {r.returncode}, expected {expect}\n"
                             f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r


def check(name, fn):
    try:
        detail = fn()
        print(f"ok   {name}" + (f": {detail}" if detail else ""))
    except Exception as e:  # one failing check does not hide the others
        failures.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def maxdiff(a, b, what):
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes {list(a.shape)} and {list(b.shape)}")
    d = (a - b).abs().max().item() if a.numel() else 0.0
    if not d <= TOL:
        raise AssertionError(f"{what}: max |difference| {d:.3g} > {TOL}")
    return d


def read(p):
    tensors, meta = torch2prunus.read_safetensors(p)
    return {k: torch.tensor(v, dtype=torch.float32).reshape(s)
            for k, (s, v) in tensors.items()}, meta


def write(p, tensors, meta=None):
    with open(p, "wb") as f:
        f.write(torch2prunus.safetensors_bytes(
            [(k, tuple(v.shape), torch2prunus._f32_bytes(v)) for k, v in tensors.items()], meta))


def pixels(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float()
    y = torch.randint(0, 10, (n,), generator=g).float()
    p = path(f"pixels-{n}-{seed}.safetensors")
    write(p, {"u": u, "y": y})
    return p


def prunus_side(ckpt, px, threads=1):
    """prunus's logits (eval, train), running statistics after the train forward, the
    batch x it used, and the checkpoint after STEPS SGD steps (on `threads` threads)."""
    out = path(os.path.basename(ckpt) + ".fwd.safetensors")
    run(PARITY, "forward", ckpt, px, out)
    fwd, _ = read(out)
    stepped = path(os.path.basename(ckpt) + f".steps{threads}.safetensors")
    run(PARITY, "train", ckpt, px, STEPS, LR, MOMENTUM, WD, threads, stepped)
    after, _ = read(stepped)
    return fwd, after


def torch_parity(net, fwd, after, masks, label):
    """Compare a torch module holding the same weights as prunus's checkpoint."""
    x = fwd["x"].reshape(-1, 1, 28, 28)
    y = torch.tensor(read(PX)[0]["y"].tolist()).long()
    start = copy.deepcopy(net)
    worst = {}
    with torch.no_grad():
        net.eval()
        worst["eval"] = maxdiff(net(x), fwd["eval"], f"{label} eval logits")
        net.train()
        worst["train"] = maxdiff(net(x), fwd["train"], f"{label} train logits")
        stats = {k: v for k, v in net.state_dict().items() if "running_" in k}
        worst["stats"] = max([maxdiff(stats[k], fwd[k], f"{label} {k} after a train forward")
                              for k in fwd if "running_" in k] + [0.0])
        if len([k for k in fwd if "running_" in k]) != len(stats):
            raise AssertionError(f"{label}: {len(stats)} running statistics in torch, "
                                 f"{len([k for k in fwd if 'running_' in k])} in prunus")
    # SGD as prunus does it: L2 on every parameter (batchnorm's too), momentum without
    # dampening, gradients and weights of pruned entries held at 0
    net = start
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    params = dict(net.named_parameters())
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        for k, mk in masks.items():
            params[k].grad *= mk
        opt.step()
        with torch.no_grad():
            for k, mk in masks.items():
                params[k] *= mk
    sd = net.state_dict()
    d = 0.0
    for k, v in after.items():
        if k.endswith(".mask"):
            continue
        d = max(d, maxdiff(sd[k], v, f"{label} {k} after {STEPS} SGD steps"))
    missing = [k for k in sd if "num_batches" not in k and k not in after]
    if missing:
        raise AssertionError(f"{label}: prunus's checkpoint lacks {missing}")
    worst["steps"] = d
    return ", ".join(f"{k} {v:.2g}" for k, v in worst.items())


def randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                C = m.num_features
                m.weight.copy_(0.5 + torch.rand(C, generator=g))
                m.bias.copy_(0.1 * torch.randn(C, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(C, generator=g))
                m.running_var.copy_(0.5 + torch.rand(C, generator=g))


def import_py(p):
    spec = importlib.util.spec_from_file_location(os.path.basename(p)[:-3], p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PX = pixels()

# ---------------------------------------------------------------------------
# torch -> prunus


def torch_to_prunus(cls, threads=1):
    def test():
        torch.manual_seed(1)
        model = getattr(torch_models, cls)()
        randomize_bn(model, 2)
        pt = path(f"{cls}.pt")
        torch.save(model.state_dict(), pt)
        run(sys.executable, TOOL, f"{MODELS}:{cls}", "--state-dict", pt, "-o", path(cls))
        fwd, after = prunus_side(path(cls + ".safetensors"), PX, threads)
        net = getattr(torch_models, cls)()
        net.load_state_dict(torch.load(pt))
        return torch_parity(net, fwd, after, {}, cls)
    return test


def round_trip(cls):
    def test():
        ckpt, out = path(cls + ".safetensors"), path(f"rt-{cls}.safetensors")
        r = run(PRUNUS, "export", ckpt, "--format", "safetensors", "-o", out)
        assert f"rt-{cls}.py (class PrunusNet)" in r.stdout, r.stdout
        gen = import_py(path(f"rt-{cls}.py"))
        exported = gen.load_safetensors(out)
        orig = getattr(torch_models, cls)()
        orig.load_state_dict(torch.load(path(f"{cls}.pt")))
        back = getattr(torch_models, cls)()
        back.load_state_dict(exported, strict=True)  # the original class takes it too
        net = gen.PrunusNet()
        net.load_state_dict(exported, strict=True)
        same = all(torch.equal(exported[k], v) for k, v in orig.state_dict().items()
                   if "num_batches" not in k)
        assert same, "the exported tensors differ from the original state_dict"
        x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            d1 = maxdiff(net.eval()(x), orig.eval()(x), f"{cls} generated module vs original")
            d2 = maxdiff(back.eval()(x), orig(x), f"{cls} original class, exported weights")
            d3 = maxdiff(net.train()(x), orig.train()(x), f"{cls} train mode")
        return f"eval {d1:.2g}, original class {d2:.2g}, train {d3:.2g}; tensors identical"
    return test


def prunus_accepts(cls):
    def test():
        cfg, ckpt = path(cls + ".cfg"), path(cls + ".safetensors")
        r = run(PRUNUS, "eval", ckpt, cfg, "--set", "dataset.test_limit=200")
        assert "test_accuracy" in r.stdout, r.stdout
        run_dir = path(f"run-{cls}")
        r = run(PRUNUS, "run", cfg, "-o", run_dir, "--threads", "1", "--quiet",
                "--set", "dataset.train_limit=300", "--set", "dataset.validation=100",
                "--set", "dataset.test_limit=200", "--set", "prune.schedule.rounds=1",
                "--set", "prune.retrain.epochs=1", *LATENCY_B1)
        ckpts = glob.glob(os.path.join(run_dir, "**", "round-01.safetensors"), recursive=True)
        assert ckpts, f"no round-01 checkpoint under {run_dir}: {r.stdout}"
        return f"prunus eval and prunus run (prune.pretrained) took {cls}"
    return test


for cls in ("ResNet8", "VggBn", "Branches"):
    check(f"torch->prunus {cls}: logits, running stats, {STEPS} SGD steps", torch_to_prunus(cls))
    if cls == "ResNet8":
        check(f"torch->prunus {cls}, prunus training on 2 threads",
              torch_to_prunus(cls, threads=2))
    check(f"torch->prunus->torch {cls}: strict load, same logits", round_trip(cls))
    if HAVE_DATA:
        check(f"prunus eval/run accept the converted {cls}", prunus_accepts(cls))
if not HAVE_DATA:
    print(f"skip prunus eval/run of converted models: no Fashion-MNIST in {DATA}")


def library_convert():
    """convert() of an instance (its own weights) writes what the command line wrote."""
    model = torch_models.Branches()
    model.load_state_dict(torch.load(path("Branches.pt")))
    conv = torch2prunus.convert(model, input_shape=(1, 28, 28))
    conv.write(path("lib.cfg"), path("lib.safetensors"))
    a, ma = read(path("lib.safetensors"))
    b, mb = read(path("Branches.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ma["architecture"] == mb["architecture"], (ma, mb)
    return f"{len(a)} tensors and the architecture identical"


check("torch2prunus.convert() as a library function", library_convert)

# ---------------------------------------------------------------------------
# prunus -> torch


def export_and_compare(label, ckpt, masked_from=None):
    out = path(f"exp-{label}.safetensors")
    run(PRUNUS, "export", ckpt, "--format", "safetensors", "-o", out)
    gen = import_py(path(f"exp-{label}.py"))
    net = gen.PrunusNet()
    exported = gen.load_safetensors(out)
    net.load_state_dict(exported, strict=True)
    src, _ = read(ckpt)
    masks = {k[:-5] + ".weight": v for k, v in src.items() if k.endswith(".mask")}
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    for k, m in masks.items():  # masked weights are exported as zeros
        assert torch.equal(exported[k], src[k] * m), k
    fwd, after = prunus_side(ckpt, PX)
    res = torch_parity(net, fwd, after, masks, label)
    return res + f" ({zeros} masked weights)"


def prunus_train_ckpt(config, label, extra=()):
    """`prunus train` of config on 256 Fashion-MNIST images, one epoch: prunus's init,
    trained running statistics."""
    run_dir = path(f"train-{label}")
    run(PRUNUS, "train", os.path.join(ROOT, "configs", config), "-o", run_dir, "--quiet",
        "--threads", "1", "--set", "train.epochs=1", "--set", "dataset.train_limit=256",
        "--set", "dataset.validation=0", "--set", "dataset.test_limit=64", *extra)
    return os.path.join(run_dir, "model.safetensors")


def mask_checkpoint(ckpt, out, fraction, seed):
    t, meta = read(ckpt)
    g = torch.Generator().manual_seed(seed)
    for k in [k for k in t if k.endswith(".mask")]:
        w = k[:-5] + ".weight"
        m = (torch.rand(t[k].shape, generator=g) >= fraction).float()
        t[k], t[w] = m, t[w] * m
    write(out, t, meta)


def prunus_resnet8():
    ckpt = prunus_train_ckpt("resnet8.cfg", "resnet8")
    masked = path("resnet8-masked.safetensors")
    mask_checkpoint(ckpt, masked, 0.4, 5)
    return export_and_compare("resnet8-masked", masked)


def prunus_shrunk(config, label, layer, full):
    """config channel-pruned by one round of `prunus run` (weight-norm, channel
    granularity, a quarter of each layer's channels): the checkpoint's convs and
    batchnorms (and what reads them) really are smaller."""
    cfg = path(f"{label}.cfg")
    shutil.copy(os.path.join(ROOT, "configs", "resnet-blocks.cfg"), path("resnet-blocks.cfg"))
    with open(os.path.join(ROOT, "configs", config)) as f:
        text = f.read()
    text += """
prune = {
  schedule = { rounds = 1; amount = 0.25; scope = "layer"; };
  criterion = { plugin = "weight-norm"; };
  granularity = { plugin = "channel"; };
  retrain = { plugin = "finetune"; epochs = 1; lr = 0.01; };
};
"""
    with open(cfg, "w") as f:
        f.write(text)
    run_dir = path(f"run-{label}")
    run(PRUNUS, "run", cfg, "-o", run_dir, "--quiet", "--threads", "1", *LATENCY_B1,
        "--set", "train.epochs=1", "--set", "dataset.train_limit=256",
        "--set", "dataset.validation=64", "--set", "dataset.test_limit=64")
    ckpt = glob.glob(os.path.join(run_dir, "**", "round-01.safetensors"), recursive=True)[0]
    t, meta = read(ckpt)
    shape = list(t[layer].shape)
    assert shape[0] < full, (layer, shape)  # shrunk: fewer output channels
    res = export_and_compare(label, ckpt)
    return res + f"; {layer} {shape}"


if HAVE_DATA:
    check(f"prunus->torch ResNet-8 (masked): logits, running stats, {STEPS} SGD steps",
          prunus_resnet8)
    check(f"prunus->torch VGG-BN (channel-pruned): logits, running stats, {STEPS} SGD steps",
          lambda: prunus_shrunk("vgg-bn.cfg", "vgg-shrunk", "stage1.0.conv.weight", 16))
    check(f"prunus->torch ResNet-8 (channel-pruned graph): logits, running stats, {STEPS} "
          "SGD steps", lambda: prunus_shrunk("resnet8.cfg", "resnet8-shrunk",
                                             "layer1.0.conv1.weight", 16))
else:
    print(f"skip prunus->torch: no Fashion-MNIST in {DATA} to train the prunus side on")

# ---------------------------------------------------------------------------
# bad input


def refused(args, out_prefix, *needles, one_line=False):
    r = run(sys.executable, TOOL, *args, "-o", out_prefix, expect=1)
    for n in needles:
        assert n in r.stderr, f"{n!r} not in: {r.stderr}"
    if one_line:
        assert len(r.stderr.strip().splitlines()) == 1, f"more than one line: {r.stderr}"
    left = glob.glob(out_prefix + "*") + glob.glob(
        os.path.join(os.path.dirname(out_prefix), ".torch2prunus-*"))
    assert not left, f"files written: {left}"
    return r.stderr.strip().splitlines()[-1][:150]


def bad_op(cls, *needles):
    def test():
        m = getattr(torch_models, cls)()
        os.makedirs(path("bad"), exist_ok=True)
        pt = path("bad", f"{cls}.pt")
        torch.save(m.state_dict(), pt)
        return refused([f"{MODELS}:{cls}", "--state-dict", pt], path("bad", "out-" + cls),
                       *needles)
    return test


check("unsupported torch.sigmoid", bad_op(
    "Sigmoid", "torch2prunus: error: unsupported op torch.sigmoid at node 'sigmoid' at ",
    "torch_models.py:", "return torch.sigmoid(self.fc(torch.flatten(x, 1)))"))
check("unsupported nn.LSTM", bad_op("Lstm", "nn.LSTM at 'rnn'"))
check("unsupported nn.LSTM (traceable)", bad_op(
    "LstmIndexed", "unsupported op nn.LSTM at node 'rnn' (module 'rnn') at ", "torch_models.py:"))
check("a module called twice", bad_op(
    "SharedConv", "node 'conv_1' (module 'conv')", "module 'conv' is called again (first at "
    "node 'conv'); a prunus layer owns its weights"))
check("an in-place op read again afterwards", bad_op(
    "InplaceHazard", "in-place Tensor.relu_ changes 'conv', which node 'add' reads afterwards"))


def pruned_state_dict():
    """torch.nn.utils.prune's weight_orig/weight_mask pairs: the mask becomes prunus's."""
    import torch.nn.utils.prune as tprune
    torch.manual_seed(4)
    m = torch_models.VggBn()
    randomize_bn(m, 5)
    tprune.l1_unstructured(m.features[0], "weight", amount=0.5)
    tprune.l1_unstructured(m.classifier[0], "weight", amount=0.7)
    pt = path("vgg-pruned.pt")
    torch.save(m.state_dict(), pt)
    run(sys.executable, TOOL, f"{MODELS}:VggBn", "--state-dict", pt, "-o", path("vgg-pruned"))
    t, _ = read(path("vgg-pruned.safetensors"))
    for key, mod in (("features.0", m.features[0]), ("classifier.0", m.classifier[0])):
        assert torch.equal(t[key + ".mask"], mod.weight_mask), key
        assert torch.equal(t[key + ".weight"], mod.weight), key
    zeros = int((t["classifier.0.mask"] == 0).sum())
    fwd, _ = prunus_side(path("vgg-pruned.safetensors"), PX)
    with torch.no_grad():
        d = maxdiff(m.eval()(fwd["x"].reshape(-1, 1, 28, 28)), fwd["eval"], "pruned VGG logits")
    return f"masks carried ({zeros} of classifier.0 pruned), eval logits {d:.2g}"


check("a torch.nn.utils.prune state_dict", pruned_state_dict)


def bad_state_dict():
    m = torch_models.VggBn()
    sd = m.state_dict()
    sd["classifier.3.weight"] = torch.zeros(10, 64)
    os.makedirs(path("bad"), exist_ok=True)
    torch.save(sd, path("bad", "vgg-wrong.pt"))
    return refused([f"{MODELS}:VggBn", "--state-dict", path("bad", "vgg-wrong.pt")],
                   path("bad", "out-vgg-wrong"), "the state_dict does not match the module",
                   "classifier.3.weight", "torch.Size([10, 64])", "torch.Size([10, 128])")


check("a state_dict whose shapes do not match the module", bad_state_dict)


def non_finite_state_dict():
    """prunus eval refuses a NaN or an infinity; the converter refuses it first."""
    cases = [("nan", "features.0.weight", (2, 0, 1, 1), float("nan"),
              "tensor 'features.0.weight' element 22 (index [2, 0, 1, 1]) is nan"),
             ("inf", "classifier.3.bias", (4,), float("-inf"),
              "tensor 'classifier.3.bias' element 4 is -inf")]
    os.makedirs(path("bad"), exist_ok=True)
    for label, key, index, value, want in cases:
        sd = torch_models.VggBn().state_dict()
        sd[key][index] = value
        pt = path("bad", f"vgg-{label}.pt")
        torch.save(sd, pt)
        refused([f"{MODELS}:VggBn", "--state-dict", pt], path("bad", f"out-vgg-{label}"),
                "torch2prunus: error: state_dict: " + want, one_line=True)
    return f"{len(cases)} refused, naming the key, the element and its value"


check("a state_dict holding NaN or an infinity", non_finite_state_dict)


def wrong_input_shape():
    """A 1-channel MLP on --input 3,28,28: one line, the op's own message, no fx dump."""
    os.makedirs(path("bad"), exist_ok=True)
    pt = path("bad", "Mlp.pt")
    torch.save(torch_models.Mlp().state_dict(), pt)
    return refused([f"{MODELS}:Mlp", "--state-dict", pt, "--input", "3,28,28"],
                   path("bad", "out-mlp-3ch"),
                   "torch2prunus: error: Mlp cannot run on inputs of shape (3, 28, 28) "
                   "(--input): node 'fc1' (module 'fc1') at ", "torch_models.py:",
                   "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x2352 and "
                   "784x32)", one_line=True)


check("a model that cannot run on the --input shape", wrong_input_shape)


def bad_buffers():
    """prunus refuses a checkpoint whose batchnorm buffers do not match its config."""
    src, meta = read(path("ResNet8.safetensors"))
    cfg = path("ResNet8.cfg")
    cases = [
        ("missing", lambda t: t.pop("layer1.0.bn2.running_var"),
         'tensor "layer1.0.bn2.running_var" is missing (the architecture needs shape [16])'),
        ("shape", lambda t: t.__setitem__("bn1.running_mean", torch.zeros(8)),
         'tensor "bn1.running_mean" has shape [8] but the architecture needs [16]'),
        ("negative", lambda t: t["bn1.running_var"].__setitem__(3, -1.0),
         'tensor "bn1.running_var" element 3 is -1; a variance is >= 0'),
        ("extra", lambda t: t.__setitem__("fc.running_mean", torch.zeros(10)),
         'unknown tensor "fc.running_mean"'),
    ]
    for name, edit, want in cases:
        t = {k: v.clone() for k, v in src.items()}
        edit(t)
        p = path(f"bad-buffers-{name}.safetensors")
        write(p, t, meta)
        r = run(PRUNUS, "eval", p, cfg, expect=1)
        assert want in r.stderr and p in r.stderr, f"{want!r} not in {r.stderr}"
        out = path(f"bad-buffers-{name}-export.safetensors")
        r = run(PRUNUS, "export", p, "--format", "safetensors", "-o", out, expect=1)
        assert want in r.stderr, r.stderr
        assert not glob.glob(out[:-len(".safetensors")] + "*"), "export wrote files"
    # the config's architecture against the checkpoint's: prune.pretrained is refused
    if HAVE_DATA:
        with open(cfg) as f:
            text = f.read().replace('name = "bn1"; type = "batchnorm"; momentum = 0.1;',
                                    'name = "bn1"; type = "batchnorm"; momentum = 0.2;')
        bad_cfg = path("ResNet8-wrong.cfg")
        with open(bad_cfg, "w") as f:
            f.write(text)
        r = run(PRUNUS, "run", bad_cfg, "-o", path("run-wrong"), "--quiet",
                "--set", "dataset.train_limit=100", "--set", "dataset.validation=10",
                expect=1)
        assert "does not match the expected" in r.stderr, r.stderr
    return f"{len(cases)} broken checkpoints refused by eval and export, naming the tensor"


check("checkpoints whose buffers do not match the architecture", bad_buffers)


def export_py_name():
    r = run(PRUNUS, "export", path("VggBn.safetensors"), "--format", "safetensors",
            "-o", path("x.py"), expect=1)
    assert "cannot end in .py" in r.stderr, r.stderr
    assert not os.path.exists(path("x.py"))


check("export -o x.py is refused", export_py_name)

shutil.rmtree(WORK)
print(f"{len(failures)} failed" + (f": {failures}" if failures else ""))
sys.exit(1 if failures else 0)
