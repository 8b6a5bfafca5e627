#!/usr/bin/python3
"""torch2prunus.py: a PyTorch module and its state_dict as a prunus config and checkpoint.

Traces the module with torch.fx, maps each op to a prunus layer (the table below,
docs/torch.md) and writes PREFIX.cfg (libconfig: dataset, model, train, prune with
`pretrained` = the checkpoint) and PREFIX.safetensors (the checkpoint `prunus eval`
and `prunus run` read). Anything else is refused naming the op and where it is; on
any error nothing is written (exit 1). Needs only Python 3 and PyTorch (1.13).

    /usr/bin/python3 tools/torch2prunus.py models.py:ResNet8 --state-dict w.pt -o out/resnet8
    prunus eval out/resnet8.safetensors out/resnet8.cfg

As a library: convert(module, state_dict, ...) returns a Conversion; its write()
method writes both files (module: an nn.Module that torch.fx can trace).
"""

import argparse
import array
import importlib.util
import inspect
import json
import math
import operator
import os
import re
import struct
import sys
import tempfile
import textwrap

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

# What is mapped to what; --help and docs/torch.md print this table.
SUPPORTED_OPS = [
    ("nn.Conv2d", "conv2d", "square kernel, stride and padding (or padding='same' with an odd "
     "kernel, 'valid'); bias or bias=False; groups=1, dilation=1, padding_mode='zeros'"),
    ("nn.BatchNorm2d, nn.BatchNorm1d", "batchnorm", "right after a Conv2d (2d) or a Linear "
     "(1d, on (N, C)); affine, track_running_stats, a momentum in (0, 1]"),
    ("nn.Linear", "dense", "on (N, features) inputs; bias=False becomes a zero bias"),
    ("nn.ReLU, F.relu, torch.relu(_), Tensor.relu(_)", "relu", "inplace or not"),
    ("nn.MaxPool2d, F.max_pool2d", "maxpool2d",
     "square kernel and stride, no padding, dilation=1, ceil_mode=False"),
    ("nn.AvgPool2d, F.avg_pool2d", "avgpool2d",
     "square kernel and stride, no padding, ceil_mode=False, no divisor_override"),
    ("nn.AdaptiveAvgPool2d(1), F.adaptive_avg_pool2d(x, 1), x.mean((2, 3))",
     "globalavgpool", "output size 1 only"),
    ("nn.Flatten, torch.flatten(x, 1), x.view(x.size(0), -1), x.reshape(N, -1)", "flatten",
     "from dimension 1 to the end; a no-op on (N, F) tensors"),
    ("+, +=, operator.add, torch.add, Tensor.add(_)", "add",
     "two tensors of one shape (no broadcasting, alpha=1)"),
    ("torch.cat", "concat", "along the channels (dim 1) of tensors of one rank"),
    ("nn.Identity, nn.Dropout, F.dropout, Tensor.contiguous", "(nothing)",
     "evaluation-mode semantics: dropped"),
]

FLOAT_MAX_TEXT = "%.9g"  # nine significant digits give a float32 back bit for bit


class ConvertError(Exception):
    """A model, state_dict or option torch2prunus cannot convert; the message says why."""


# ---------------------------------------------------------------------------
# safetensors (F32 only), written atomically


def _f32_bytes(t):
    t = t.detach().to(device="cpu", dtype=torch.float32).contiguous().reshape(-1)
    a = array.array("f", t.tolist())
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, shape, bytes of little-endian float32) -> file bytes."""
    header, offset = {}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(d for _, _, d in tensors)


def read_safetensors(path):
    """(dict name -> (shape, list of floats), metadata dict) of an F32 safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ConvertError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ConvertError(f"{path}: tensor {name!r} is {info['dtype']}, expected F32")
        a, b = info["data_offsets"]
        vals = array.array("f")
        vals.frombytes(blob[8 + n + a:8 + n + b])
        if sys.byteorder != "little":
            vals.byteswap()
        out[name] = (tuple(info["shape"]), vals.tolist())
    return out, meta


def _write_atomically(pairs):
    """pairs: (path, bytes). Each goes to a temp file in its folder first; only when all
    are written are they renamed into place, so an error leaves nothing behind."""
    temps = []
    try:
        for path, data in pairs:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ConvertError(f"{path}: folder {folder} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=".torch2prunus-", dir=folder)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        done = []
        try:
            for (path, _), tmp in zip(pairs, temps):
                os.replace(tmp, path)
                done.append(path)
        except OSError:
            for path in done:
                os.unlink(path)
            raise
        temps = []
    except OSError as e:
        raise ConvertError(f"cannot write {e.filename or ''}: {e.strerror or e}") from e
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


# ---------------------------------------------------------------------------
# where a node is and what its op is called, for messages

_TORCH_DIR = os.path.dirname(torch.__file__)


def _module_op_name(m):
    cls = type(m)
    mod = cls.__module__
    return ("nn." + cls.__name__) if mod.startswith("torch.nn.") else f"{mod}.{cls.__name__}"


def _op_name(gm, node):
    if node.op == "call_module":
        return _module_op_name(gm.get_submodule(node.target))
    if node.op == "call_method":
        return "Tensor." + node.target
    if node.op == "get_attr":
        return "get_attr"
    t = node.target
    name = getattr(t, "__name__", str(t))
    if t is getattr(operator, name, None):
        return "operator." + name
    if t is getattr(F, name, None):
        return "F." + name
    if t is getattr(torch, name, None):
        return "torch." + name
    return f"{getattr(t, '__module__', None) or '?'}.{name}"


def _user_frame(node):
    """'file:line: code' of the model's own source line that made node, or ''."""
    trace = node.stack_trace or ""
    for m in re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)', trace):
        if not m.group(1).startswith(_TORCH_DIR) and not m.group(1).endswith("torch2prunus.py"):
            return f"{m.group(1)}:{m.group(2)}: {m.group(3).strip()}"
    return ""


def _where(gm, node):
    w = f"node '{node.name}'"
    if node.op == "call_module":
        w += f" (module '{node.target}')"
    frame = _user_frame(node)
    return w + (f" at {frame}" if frame else "")


# ---------------------------------------------------------------------------
# the mapping


class _Layer:
    def __init__(self, name, type_, settings, inputs, node):
        self.name, self.type, self.settings, self.inputs, self.node = (
            name, type_, settings, inputs, node)
        self.tensors = []  # (suffix, tensor)


def _stub(fn):
    return inspect.signature(fn)


# Signatures of the functions and methods whose arguments matter (bound to read them).
def _max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False): pass
def _avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None): pass
def _adaptive_avg_pool2d(input, output_size): pass
def _relu(input, inplace=False): pass
def _dropout(input, p=0.5, training=True, inplace=False): pass
def _flatten(input, start_dim=0, end_dim=-1): pass
def _cat(tensors, dim=0): pass
def _add(input, other, alpha=1): pass
def _mean(input, dim=None, keepdim=False, dtype=None): pass
def _one(input): pass
def _view(input, *shape): pass


_FUNCTIONS = {
    F.relu: ("relu", _relu), torch.relu: ("relu", _relu), torch.relu_: ("relu", _relu),
    operator.add: ("add", _add), operator.iadd: ("add", _add), torch.add: ("add", _add),
    torch.cat: ("cat", _cat), torch.concat: ("cat", _cat),
    torch.flatten: ("flatten", _flatten),
    F.max_pool2d: ("maxpool", _max_pool2d), torch.max_pool2d: ("maxpool", _max_pool2d),
    F.avg_pool2d: ("avgpool", _avg_pool2d), torch._C._nn.avg_pool2d: ("avgpool", _avg_pool2d),
    F.adaptive_avg_pool2d: ("gap", _adaptive_avg_pool2d),
    F.dropout: ("alias", _dropout), torch.mean: ("mean", _mean),
    getattr: ("helper", None), operator.getitem: ("helper", None),
}
_METHODS = {
    "relu": ("relu", _one), "relu_": ("relu", _one), "add": ("add", _add),
    "add_": ("add", _add), "flatten": ("flatten", _flatten), "view": ("view", _view),
    "reshape": ("view", _view), "mean": ("mean", _mean), "contiguous": ("alias", _one),
    "size": ("helper", None), "dim": ("helper", None),
}
_MODULES = [
    (nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn"), (nn.BatchNorm1d, "bn"), (nn.Linear, "linear"),
    (nn.ReLU, "relu"), (nn.MaxPool2d, "maxpool"), (nn.AvgPool2d, "avgpool"),
    (nn.AdaptiveAvgPool2d, "gap"), (nn.Flatten, "flatten"), (nn.Identity, "alias"),
    (nn.Dropout, "alias"), (nn.Dropout2d, "alias"),
]
_INPLACE_METHODS = {"relu_", "add_"}


def _kind(gm, node):
    """What node is to the mapping ('conv', 'relu', ... 'helper'), or None: unsupported."""
    if node.op in ("placeholder", "output"):
        return node.op
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        for cls, kind in _MODULES:
            if type(m) is cls:
                return kind
        return None
    if node.op == "call_function":
        for fn, (kind, _) in _FUNCTIONS.items():
            if node.target is fn:
                return kind
        return None
    if node.op == "call_method":
        return _METHODS.get(node.target, (None,))[0]
    return None


def _bind(stub, node):
    try:
        return _stub(stub).bind(*node.args, **node.kwargs).arguments
    except TypeError as e:
        raise ConvertError(f"cannot read the arguments of {node.name}: {e}") from e


def _pair(v, what, where):
    """A square setting (int, or a tuple of two equal ints) as one int."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise ConvertError(f"{where}: {what} {tuple(v)} is not square; prunus takes "
                               "square kernels, strides and paddings")
        v = v[0]
    if not isinstance(v, int):
        raise ConvertError(f"{where}: {what} {v!r} is not an integer")
    return v


def _check(cond, where, msg):
    if not cond:
        raise ConvertError(f"{where}: {msg}")


class Conversion:
    """What convert() found: the layers, the prunus config text and checkpoint tensors."""

    def __init__(self, name, input_shape, layers, normalize, source):
        self.name, self.input_shape, self.layers = name, input_shape, layers
        self.normalize, self.source = normalize, source

    # -- the architecture string of checkpoints (prunus_arch_to_string's syntax)
    def architecture(self):
        parts = ["x".join(str(d) for d in self.input_shape)]
        prev = "input"
        for L in self.layers:
            s = L.settings
            text = L.type
            if L.type == "dense":
                text += f":{s['units']}"
            elif L.type == "conv2d":
                text += f":{s['channels']}:{s['kernel']}:{s['stride']}:{s['padding']}"
                text += ":nobias" if not s["bias"] else ""
            elif L.type in ("maxpool2d", "avgpool2d"):
                text += f":{s['kernel']}:{s['stride']}"
            elif L.type == "batchnorm":
                text += ":" + FLOAT_MAX_TEXT % s["momentum"] + ":" + FLOAT_MAX_TEXT % s["eps"]
            text += "@" + L.name
            if L.inputs != [prev]:
                text += "<" + ",".join(L.inputs)
            parts.append(text)
            prev = L.name
        return "|".join(parts)

    def checkpoint_bytes(self):
        tensors = []
        for L in self.layers:
            for suffix, t in L.tensors:
                tensors.append((f"{L.name}.{suffix}", tuple(t.shape), _f32_bytes(t)))
        kind, mean, std = self.normalize
        meta = {"format": "prunus", "prunus_version": "torch2prunus",
                "producer": "tools/torch2prunus.py", "source": self.source,
                "architecture": self.architecture(), "input_normalize": kind,
                "input_mean": FLOAT_MAX_TEXT % mean, "input_std": FLOAT_MAX_TEXT % std}
        return safetensors_bytes(tensors, meta)

    def config_text(self, checkpoint_path, config_path, dataset_dir):
        def num(v):  # a libconfig float: it needs a decimal point
            t = FLOAT_MAX_TEXT % v
            if "." not in t:
                t = t.replace("e", ".0e") if "e" in t else t + ".0"
            return t

        ckpt = os.path.relpath(os.path.abspath(checkpoint_path),
                               os.path.dirname(os.path.abspath(config_path)))
        rows = []
        prev = "input"
        for L in self.layers:
            s = L.settings
            keys = [f'name = "{L.name}";', f'type = "{L.type}";']
            if L.type == "dense":
                keys.append(f"units = {s['units']};")
            elif L.type == "conv2d":
                keys += [f"channels = {s['channels']};", f"kernel = {s['kernel']};",
                         f"stride = {s['stride']};", f"padding = {s['padding']};"]
                if not s["bias"]:
                    keys.append("bias = false;")
            elif L.type in ("maxpool2d", "avgpool2d"):
                keys += [f"kernel = {s['kernel']};", f"stride = {s['stride']};"]
            elif L.type == "batchnorm":
                keys += [f"momentum = {num(s['momentum'])};", f"eps = {num(s['eps'])};"]
            if L.inputs != [prev]:
                ins = ", ".join(f'"{i}"' for i in L.inputs)
                keys.append(f"input = [{ins}];" if len(L.inputs) > 1 else f"input = {ins};")
            rows.append("    { " + " ".join(keys) + " }")
            prev = L.name
        kind = self.normalize[0]
        d = dataset_dir
        c, h, w = self.input_shape
        return f"""# {self.name}: converted from {self.source} by tools/torch2prunus.py.
# The weights are in {ckpt} (prune.pretrained); `prunus eval {ckpt} THIS.cfg` evaluates
# them. The checkpoint carries the input normalisation the PyTorch model expects;
# `prunus run` fits dataset.normalize's on the training split. Edit train and prune.
name = "{self.name}";
seed = 0;

dataset = {{
  format = "idx";
  train_images = "{d}/train-images-idx3-ubyte.gz";
  train_labels = "{d}/train-labels-idx1-ubyte.gz";
  test_images  = "{d}/t10k-images-idx3-ubyte.gz";
  test_labels  = "{d}/t10k-labels-idx1-ubyte.gz";
  validation = 5000;
  normalize = "{kind}";
}};

model = {{
  input = [{c}, {h}, {w}];
  init = "kaiming";
  layers = (
{("," + chr(10)).join(rows)}
  );
}};

train = {{
  epochs = 5;
  batch = 128;
  optimizer = "sgd";
  lr = 0.01;
  momentum = 0.9;
  weight_decay = 0.0005;
  lr_schedule = "cosine";
}};

prune = {{
  pretrained = "{ckpt}";
  schedule = {{ rounds = 3; target = 0.5; scope = "global"; }};
  criterion = {{ plugin = "magnitude"; }};
  granularity = {{ plugin = "weight"; }};
  retrain = {{ plugin = "finetune"; epochs = 1; lr = 0.01; }};
}};
"""

    def write(self, config_path, checkpoint_path,
              dataset_dir="/usr/share/datasets/fashion-mnist"):
        """Write both files, atomically: on an error neither is left behind."""
        _write_atomically([(checkpoint_path, self.checkpoint_bytes()),
                           (config_path, self.config_text(checkpoint_path, config_path,
                                                          dataset_dir).encode())])


_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")


def _check_finite(tensors, what="state_dict"):
    """Refuse a NaN or infinite value, naming the key, the first such element's flat index
    (and its index per dimension) and value: prunus eval would refuse the checkpoint."""
    for k, v in tensors.items():
        if not v.is_floating_point():
            continue
        flat = v.detach().reshape(-1)
        bad = (~torch.isfinite(flat.to(torch.float32))).nonzero()  # as the checkpoint has it
        if len(bad):
            i = rest = int(bad[0])
            index = []
            for d in reversed(v.shape):
                index.insert(0, rest % d)
                rest //= d
            at = f" (index {index})" if v.dim() > 1 else ""
            x = float(flat[i])
            raise ConvertError(f"{what}: tensor '{k}' element {i}{at} is {x}" +
                               (", beyond float32's range" if math.isfinite(x) else "") +
                               "; prunus takes finite weights only")


def _prepare_state_dict(sd):
    """Plain name -> tensor; torch.nn.utils.prune's weight_orig/weight_mask pairs become
    weight (= orig * mask) plus a mask; a DataParallel 'module.' prefix is dropped."""
    if isinstance(sd, nn.Module):
        sd = sd.state_dict()
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConvertError("the state_dict is not a mapping of names to tensors")
    _check_finite(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    out, masks = {}, {}
    for k, v in sd.items():
        if k.endswith("_orig") and k[:-5] + "_mask" in sd:
            base = k[:-5]
            mask = sd[base + "_mask"]
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ConvertError(f"state_dict: {base}_mask holds values other than 0 and 1")
            out[base] = v * mask
            masks[base] = mask.to(torch.float32)
        elif k.endswith("_mask") and k[:-5] + "_orig" in sd:
            continue
        else:
            out[k] = v
    return out, masks


class _NodeFailed(Exception):
    """Running .node raised .__cause__. (torch.fx's Interpreter appends the node and its
    stack to the message of what passes through it; these two attributes it leaves.)"""

    def __init__(self, node):
        super().__init__(node.name)
        self.node = node


class _Shapes(torch.fx.Interpreter):
    """Runs the graph, leaving each tensor's shape in node.meta['prunus_shape']. Not
    torch.fx's ShapeProp: on an error it prints a traceback and raises a RuntimeError
    holding the node's stack, not the op's message."""

    def run_node(self, n):
        try:
            result = super().run_node(n)
        except Exception as e:
            raise _NodeFailed(n) from e
        if isinstance(result, torch.Tensor):
            n.meta["prunus_shape"] = tuple(result.shape)
        return result


def convert(module, state_dict=None, input_shape=(1, 28, 28), normalize=("unit", 0.0, 1.0),
            name=None, source=None):
    """(Conversion) of module (an nn.Module torch.fx can trace) with state_dict loaded
    into it strictly (None: its own weights). Raises ConvertError naming what is wrong."""
    masks = {}
    if state_dict is not None:
        state_dict, masks = _prepare_state_dict(state_dict)
        try:
            module.load_state_dict(state_dict, strict=True)
        except RuntimeError as e:
            raise ConvertError("the state_dict does not match the module: " +
                               str(e).strip().replace("\n\t", " ").replace("\n", " ")) from e
    else:
        _check_finite(module.state_dict(), "the module's own weights")
    module.eval()
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as e:  # torch.fx raises anything the forward raises
        leaves = [f"{_module_op_name(m)} at '{path}'" for path, m in module.named_modules()
                  if path and tracer.is_leaf_module(m, path) and
                  not any(type(m) is cls for cls, _ in _MODULES)]
        raise ConvertError(f"torch.fx cannot trace {type(module).__name__}: "
                           f"{type(e).__name__}: {e}" +
                           (f"; it holds modules prunus does not support: {', '.join(leaves)}"
                            if leaves else "")) from e
    gm = torch.fx.GraphModule(tracer.root, graph)
    nodes = list(gm.graph.nodes)

    # 1. every op is one prunus knows (before running anything)
    for n in nodes:
        if n.op == "get_attr":
            raise ConvertError(f"unsupported: forward reads the parameter or buffer "
                               f"'{n.target}' directly, at {_where(gm, n)}")
        if _kind(gm, n) is None:
            raise ConvertError(f"unsupported op {_op_name(gm, n)} at {_where(gm, n)} "
                               "(tools/torch2prunus.py --help lists the supported ops)")
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ConvertError(f"forward takes {len(placeholders)} inputs; prunus models take one")

    # 2. shapes, on two samples of the input shape
    try:
        _Shapes(gm).run(torch.zeros((2,) + tuple(input_shape)))
    except Exception as e:
        node, err = (e.node, e.__cause__) if isinstance(e, _NodeFailed) else (None, e)
        text = re.sub(r"\s*\n\s*", " ", str(err).strip())  # one line
        raise ConvertError(f"{type(module).__name__} cannot run on inputs of shape "
                           f"{tuple(input_shape)} (--input): " +
                           (f"{_where(gm, node)}: " if node is not None else "") +
                           type(err).__name__ + (f": {text}" if text else "")) from err

    def shape(n):
        return n.meta.get("prunus_shape") if isinstance(n, torch.fx.Node) else None

    # 3. the mapping: node -> the prunus layer whose output it is ("input" for x)
    layers, by_name, producer, used_modules = [], {}, {}, {}
    module_names = {t for t, _ in module.named_modules() if t}

    def src(arg, n, what="input"):
        if not isinstance(arg, torch.fx.Node) or arg not in producer:
            raise ConvertError(f"{_where(gm, n)}: {_op_name(gm, n)}'s {what} is not a tensor "
                               "computed by the model (constants and other values are "
                               "not supported)")
        return producer[arg]

    def fresh_name(n):
        base = n.target if n.op == "call_module" else n.name
        if not _NAME_OK.match(base) or base == "input" or base in by_name or (
                n.op != "call_module" and base in module_names):
            base = re.sub(r"[^A-Za-z0-9_.-]", "_", n.name)[:50] or "layer"
            k, cand = 0, base
            while cand in by_name or cand in module_names or cand == "input":
                k += 1
                cand = f"{base}_{k}"
            base = cand
        return base

    def add_layer(n, type_, settings, inputs, tensors=()):
        if n.op == "call_module" and tensors:
            lname = n.target
            _check(_NAME_OK.match(lname) and lname != "input", _where(gm, n),
                   f"module path '{lname}' cannot be a prunus layer name (1-63 of "
                   "A-Z a-z 0-9 _ . -, not 'input'), and its tensors are named after it")
            _check(lname not in by_name, _where(gm, n), f"'{lname}' is taken")
        else:
            lname = fresh_name(n)
        L = _Layer(lname, type_, settings, list(inputs), n)
        L.tensors = list(tensors)
        layers.append(L)
        by_name[lname] = L
        producer[n] = lname
        return L

    def layer_of(name):
        return by_name.get(name)

    for n in nodes:
        kind = _kind(gm, n)
        where = _where(gm, n)
        op = _op_name(gm, n)
        if kind == "placeholder":
            producer[n] = "input"
            continue
        if kind == "output":
            continue
        if kind == "helper" and shape(n) is not None:
            raise ConvertError(f"unsupported op {op} on a tensor at {where} (indexing and "
                               "slicing tensors have no prunus layer)")
        if kind == "helper" or shape(n) is None:
            if kind != "helper":
                raise ConvertError(f"{where}: {op} does not return one tensor")
            continue  # sizes read for view/reshape; checked where they are used
        out_shape = shape(n)
        mod = gm.get_submodule(n.target) if n.op == "call_module" else None
        if mod is not None and any(True for _ in mod.parameters(recurse=False)):
            if n.target in used_modules:
                raise ConvertError(f"{where}: module '{n.target}' is called again (first at "
                                   f"node '{used_modules[n.target]}'); a prunus layer owns "
                                   "its weights, so give each call a module of its own")
            used_modules[n.target] = n.name
        first = n.args[0] if n.args else None
        if kind == "conv":
            m = mod
            _check(m.groups == 1, where, f"Conv2d groups={m.groups}; prunus convolutions have "
                   "groups=1")
            _check(_pair(m.dilation, "dilation", where) == 1, where,
                   f"Conv2d dilation={m.dilation}; prunus takes dilation 1")
            _check(m.padding_mode == "zeros", where,
                   f"Conv2d padding_mode='{m.padding_mode}'; prunus pads with zeros")
            k = _pair(m.kernel_size, "kernel_size", where)
            if m.padding == "same":
                _check(k % 2 == 1, where, "padding='same' with an even kernel is asymmetric")
                pad = (k - 1) // 2
            elif m.padding == "valid":
                pad = 0
            else:
                pad = _pair(m.padding, "padding", where)
            _check(len(shape(first)) == 4, where, "Conv2d on a tensor that is not (N, C, H, W)")
            tensors = [("weight", m.weight)]
            if m.bias is not None:
                tensors.append(("bias", m.bias))
            tensors.append(("mask", masks.get(f"{n.target}.weight", torch.ones_like(m.weight))))
            add_layer(n, "conv2d", {"channels": m.out_channels, "kernel": k,
                                    "stride": _pair(m.stride, "stride", where), "padding": pad,
                                    "bias": m.bias is not None}, [src(first, n)], tensors)
        elif kind == "linear":
            m = mod
            _check(len(shape(first)) == 2, where,
                   f"Linear on a tensor of shape {list(shape(first))}; prunus's dense layer "
                   "takes (N, features): flatten first")
            bias = m.bias if m.bias is not None else torch.zeros(m.out_features)
            if m.bias is None:
                print(f"torch2prunus: note: {n.target} has no bias; prunus's dense layer has "
                      "one, written as zeros (training moves it)", file=sys.stderr)
            add_layer(n, "dense", {"units": m.out_features}, [src(first, n)],
                      [("weight", m.weight), ("bias", bias),
                       ("mask", masks.get(f"{n.target}.weight", torch.ones_like(m.weight)))])
        elif kind == "bn":
            m = mod
            _check(m.affine and m.track_running_stats, where,
                   f"{op}(affine={m.affine}, track_running_stats={m.track_running_stats}); "
                   "prunus's batchnorm has a scale, a shift and running statistics")
            _check(m.momentum is not None and 0.0 < m.momentum <= 1.0, where,
                   f"{op} momentum={m.momentum}; prunus takes a momentum in (0, 1] "
                   "(not the cumulative average of momentum=None)")
            rank = len(shape(first))
            _check((isinstance(m, nn.BatchNorm2d) and rank == 4) or
                   (isinstance(m, nn.BatchNorm1d) and rank == 2), where,
                   f"{op} on a tensor of shape {list(shape(first))}")
            prev = src(first, n)
            pl = layer_of(prev)
            _check(pl is not None and pl.type in ("conv2d", "dense"), where,
                   f"{op} follows {prev!r} ({pl.type if pl else 'the input'}); prunus's "
                   "batchnorm must follow a conv2d or dense layer, whose outputs it normalises")
            add_layer(n, "batchnorm", {"momentum": float(m.momentum), "eps": float(m.eps)},
                      [prev], [("weight", m.weight), ("bias", m.bias),
                               ("running_mean", m.running_mean), ("running_var", m.running_var)])
        elif kind == "relu":
            add_layer(n, "relu", {}, [src(first, n)])
        elif kind in ("maxpool", "avgpool"):
            if mod is not None:
                a = {k: getattr(mod, k) for k in ("kernel_size", "stride", "padding", "ceil_mode")}
                a["dilation"] = getattr(mod, "dilation", 1)
                a["return_indices"] = getattr(mod, "return_indices", False)
                a["divisor_override"] = getattr(mod, "divisor_override", None)
                x = first
            else:
                a = _bind(_max_pool2d if kind == "maxpool" else _avg_pool2d, n)
                x = a["input"]
            k = _pair(a["kernel_size"], "kernel_size", where)
            st = a.get("stride")
            st = k if st is None or st == [] or st == () else _pair(st, "stride", where)
            _check(_pair(a.get("padding", 0), "padding", where) == 0, where,
                   f"{op} padding={a.get('padding')}; prunus pools without padding")
            _check(_pair(a.get("dilation", 1), "dilation", where) == 1, where,
                   f"{op} dilation={a.get('dilation')}; prunus takes dilation 1")
            _check(not a.get("ceil_mode"), where, f"{op} ceil_mode=True; prunus floors")
            _check(not a.get("return_indices"), where, f"{op} return_indices=True")
            _check(a.get("divisor_override") is None, where, f"{op} divisor_override")
            _check(len(shape(x)) == 4, where, f"{op} on a tensor that is not (N, C, H, W)")
            add_layer(n, "maxpool2d" if kind == "maxpool" else "avgpool2d",
                      {"kernel": k, "stride": st}, [src(x, n)])
        elif kind == "gap":
            if mod is not None:
                size, x = mod.output_size, first
            else:
                a = _bind(_adaptive_avg_pool2d, n)
                size, x = a["output_size"], a["input"]
            _check(size in (1, (1, 1), [1, 1]), where,
                   f"{op} output_size={size}; prunus pools globally (output size 1) only")
            _check(len(shape(x)) == 4, where, f"{op} on a tensor that is not (N, C, H, W)")
            add_layer(n, "globalavgpool", {}, [src(x, n)])
        elif kind == "mean":
            a = _bind(_mean, n)
            x, dims = a["input"], a.get("dim")
            dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
            _check(len(shape(x)) == 4 and sorted(d % 4 for d in dims if isinstance(d, int))
                   == [2, 3] and len(dims) == 2 and a.get("dtype") is None, where,
                   f"{op} over dims {a.get('dim')}; only the mean over (2, 3) of an "
                   "(N, C, H, W) tensor (global average pooling) is supported")
            add_layer(n, "globalavgpool", {}, [src(x, n)])
        elif kind in ("flatten", "view"):
            if mod is not None:
                x, start, end = first, mod.start_dim, mod.end_dim
            elif kind == "flatten":
                a = _bind(_flatten, n)
                x, start, end = a["input"], a.get("start_dim", 0), a.get("end_dim", -1)
            else:
                x, start, end = first, 1, -1
            ins = shape(x)
            _check(ins is not None, where, f"{op} of something that is not a tensor")
            ok = (start == 1 and end in (-1, len(ins) - 1) and kind == "flatten") or (
                kind == "view" and len(out_shape) == 2 and out_shape[0] == ins[0])
            _check(ok and len(ins) in (2, 4), where,
                   f"{op} from {list(ins)} to {list(out_shape)}; prunus flattens (N, C, H, W) "
                   "to (N, C*H*W) only (torch.flatten(x, 1), x.view(x.size(0), -1))")
            if len(ins) == 2:
                producer[n] = src(x, n)  # already flat: nothing to do
            else:
                add_layer(n, "flatten", {}, [src(x, n)])
        elif kind == "add":
            a = _bind(_add, n)
            _check(a.get("alpha", 1) == 1, where, f"{op} alpha={a.get('alpha')}; only alpha=1")
            xa, xb = a["input"], a["other"]
            ia, ib = src(xa, n, "first operand"), src(xb, n, "second operand")
            _check(shape(xa) == shape(xb), where,
                   f"{op} of shapes {list(shape(xa))} and {list(shape(xb))}; prunus adds "
                   "tensors of one shape (no broadcasting)")
            add_layer(n, "add", {}, [ia, ib])
        elif kind == "cat":
            a = _bind(_cat, n)
            xs, dim = list(a["tensors"]), a.get("dim", 0)
            ranks = {len(shape(x) or ()) for x in xs}
            _check(len(ranks) == 1 and ranks <= {2, 4}, where,
                   f"{op} of tensors of different ranks or not (N, C[, H, W])")
            rank = ranks.pop()
            _check(dim % rank == 1, where,
                   f"{op} along dim {dim}; prunus concatenates along the channels (dim 1)")
            _check(2 <= len(xs) <= 8, where, f"{op} of {len(xs)} tensors; prunus takes 2 to 8")
            add_layer(n, "concat", {}, [src(x, n) for x in xs])
        elif kind == "alias":
            producer[n] = src(first if mod is not None or n.op == "call_method"
                              else _bind(_dropout, n)["input"], n)
        else:
            raise ConvertError(f"unsupported op {op} at {where}")
        # an in-place op changes its input for every later reader, which torch.fx's
        # graph does not show: refuse the case where the order would matter
        inplace = (n.op == "call_method" and n.target in _INPLACE_METHODS) or \
            n.target in (operator.iadd, torch.relu_) or \
            (mod is not None and getattr(mod, "inplace", False)) or \
            (n.op == "call_function" and kind == "relu" and _bind(_relu, n).get("inplace"))
        if inplace and isinstance(first, torch.fx.Node):
            later = [u for u in first.users if u is not n and nodes.index(u) > nodes.index(n)]
            _check(not later, where,
                   f"in-place {op} changes '{first.name}', which node '{later[0].name}' reads "
                   "afterwards; torch.fx records the value from before: use an out-of-place op"
                   if later else "")

    # 4. the graph as prunus wants it: one output, the last layer; every other read
    out = [n for n in nodes if n.op == "output"][0]
    res = out.args[0]
    _check(isinstance(res, torch.fx.Node) and res in producer and producer[res] != "input",
           "the model's output", "forward must return one tensor computed by the model")
    _check(layers and producer[res] == layers[-1].name, _where(gm, res),
           f"the model's output is '{producer[res]}', but layers come after it; "
           "prunus's output is its last layer")
    read = {i for L in layers for i in L.inputs}
    for L in layers[:-1]:
        _check(L.name in read, _where(gm, L.node),
               f"the output of '{L.name}' is never used (if this is an in-place op, "
               "assign its result: x = F.relu(x))")
    oshape = shape(res)
    dense = [L for L in layers if L.type == "dense"]
    _check(len(oshape) == 2 and dense and dense[-1].settings["units"] == oshape[1],
           "the model's output",
           f"shape {list(oshape)}; prunus's output is (N, classes), the class count being "
           "the last Linear's out_features")
    if name is None:
        name = re.sub(r"[^A-Za-z0-9_-]", "-", type(module).__name__.lower())
    return Conversion(name, tuple(input_shape), layers, normalize,
                      source or type(module).__name__)


# ---------------------------------------------------------------------------
# command line


def load_module(spec, args=(), kwargs=None):
    """An instance of 'path/to/file.py:ClassName' built with args and kwargs."""
    path, sep, cls = spec.rpartition(":")
    if not sep or not path or not cls:
        raise ConvertError(f"module '{spec}': expected path/to/file.py:ClassName")
    if not os.path.isfile(path):
        raise ConvertError(f"module '{spec}': no file {path}")
    modname = "_torch2prunus_" + re.sub(r"\W", "_", os.path.basename(path)[:-3])
    s = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(s)
    sys.modules[modname] = mod
    try:
        s.loader.exec_module(mod)
    except Exception as e:
        raise ConvertError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    if not hasattr(mod, cls):
        raise ConvertError(f"{path} has no class {cls}")
    try:
        m = getattr(mod, cls)(*args, **(kwargs or {}))
    except Exception as e:
        raise ConvertError(f"{cls}(*{list(args)}, **{kwargs or {}}) failed: "
                           f"{type(e).__name__}: {e}") from e
    if not isinstance(m, nn.Module):
        raise ConvertError(f"{path}:{cls} is not a torch.nn.Module")
    return m


def _ops_table():
    return "\n".join(f"  {a}\n" + textwrap.fill(f"-> {b}: {c}", 88, initial_indent=" " * 6,
                                                 subsequent_indent=" " * 9)
                     for a, b, c in SUPPORTED_OPS)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="torch2prunus.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a PyTorch module and its state_dict into a prunus config "
        "(PREFIX.cfg) and checkpoint (PREFIX.safetensors). Nothing is written on an error "
        "(exit 1).",
        epilog="supported ops (anything else is refused, naming the op and where it is):\n" +
        _ops_table() + "\n\ndocs/torch.md has the details and the reverse direction "
        "(prunus export --format safetensors).")
    p.add_argument("module", help="path/to/file.py:ClassName (an nn.Module torch.fx traces)")
    p.add_argument("--args", default="[]", help="constructor arguments, a JSON list")
    p.add_argument("--kwargs", default="{}", help="constructor keyword arguments, a JSON object")
    p.add_argument("--state-dict", required=True, metavar="FILE",
                   help="the weights (.pt/.pth: torch.save(model.state_dict()))")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX",
                   help="writes PREFIX.cfg and PREFIX.safetensors")
    p.add_argument("--input", default="1,28,28", metavar="C,H,W", help="input shape (1,28,28)")
    p.add_argument("--normalize", choices=["unit", "standard"], default="unit",
                   help="what the model expects: u/255 (unit) or (u/255 - mean)/std (standard)")
    p.add_argument("--mean", type=float, default=0.0, help="with --normalize standard")
    p.add_argument("--std", type=float, default=1.0, help="with --normalize standard")
    p.add_argument("--name", help="the config's name (default: the class name)")
    p.add_argument("--dataset-dir", default="/usr/share/datasets/fashion-mnist",
                   help="folder of the IDX files the config names")
    a = p.parse_args(argv)
    try:
        try:
            shape = tuple(int(v) for v in a.input.split(","))
            assert len(shape) == 3 and min(shape) > 0
        except (ValueError, AssertionError):
            raise ConvertError(f"--input {a.input}: expected C,H,W (three positive integers)")
        if a.normalize == "standard" and not a.std > 0:
            raise ConvertError(f"--std {a.std}: a standard deviation is > 0")
        if a.name is not None and not re.match(r"^[A-Za-z0-9_-]+$", a.name):
            raise ConvertError(f"--name {a.name!r}: letters, digits, '-' and '_' only")
        try:
            args, kwargs = json.loads(a.args), json.loads(a.kwargs)
            assert isinstance(args, list) and isinstance(kwargs, dict)
        except (ValueError, AssertionError):
            raise ConvertError("--args must be a JSON list and --kwargs a JSON object")
        module = load_module(a.module, args, kwargs)
        try:
            sd = torch.load(a.state_dict, map_location="cpu")
        except Exception as e:
            raise ConvertError(f"cannot read {a.state_dict}: {type(e).__name__}: {e}") from e
        norm = (a.normalize, a.mean, a.std) if a.normalize == "standard" else ("unit", 0.0, 1.0)
        conv = convert(module, sd, shape, norm, a.name, source=a.module)
        cfg, ckpt = a.output + ".cfg", a.output + ".safetensors"
        conv.write(cfg, ckpt, a.dataset_dir)
    except ConvertError as e:
        print(f"torch2prunus: error: {e}", file=sys.stderr)
        return 1
    n_params = sum(t.numel() for L in conv.layers for s, t in L.tensors
                   if s in ("weight", "bias"))
    print(f"torch2prunus: {ckpt} and {cfg}: {len(conv.layers)} layers, {n_params} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
