"""Golden fixtures for runtime/cpu: every op of the catalogue and every DSL composition, computed by
PyTorch in float32 on the CPU. Run from the repository root:

    .venv-torch/bin/python test/golden/gen_ops.py

Writes test/golden/ops/<suite>.safetensors (inputs and torch's outputs) and
test/golden/ops/manifest.json (one entry per case: op, how the test builds it, its arguments and
its tensor names). Deterministic: every case draws from its own seeded generator, so adding a case
does not change the others. test/golden/ops.test.ts reads the manifest and checks each case.
"""

import json
import os
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from gen_bf16 import write_bf16

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops")
torch.set_num_threads(1)


class Suite:
    """The cases of one safetensors file."""

    def __init__(self, name):
        self.name = name
        self.tensors = {}
        self.cases = []

    def case(self, op, title, inputs, out, args=None, via="dsl"):
        """inputs: list of (name, tensor); out: torch's result; args: what the test passes to the DSL
        (via "dsl") or the node's attrs (via "graph", for ops or attrs the DSL has no surface for)."""
        cid = f"{op}.{sum(1 for c in self.cases if c['op'] == op)}"
        ins = []
        for name, t in inputs:
            key = f"{cid}.{name}"
            self.tensors[key] = store(t)
            ins.append({"name": name, "tensor": key, "dtype": dtype_name(t)})
        self.tensors[f"{cid}.out"] = store(out)
        self.cases.append(
            {
                "id": cid,
                "op": op,
                "title": title,
                "via": via,
                "args": args or {},
                "inputs": ins,
                "output": f"{cid}.out",
                "outputDType": dtype_name(out),
                "file": f"{self.name}.safetensors",
            }
        )


def dtype_name(t):
    return "i32" if t.dtype in (torch.int32, torch.int64) else "f32"


def store(t):
    t = t.detach()
    if t.dtype == torch.bool:
        t = t.float()
    if t.dtype == torch.int64:
        t = t.to(torch.int32)
    if t.dtype in (torch.bfloat16, torch.float64):
        t = t.float()
    return t.contiguous().clone()


def gen(tag):
    """A generator seeded by the case's tag, independent of case order."""
    return torch.Generator().manual_seed(zlib.crc32(tag.encode()))


def randn(tag, *shape, scale=1.0):
    return torch.randn(list(shape), generator=gen(tag)) * scale


def uniform(tag, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(list(shape), generator=gen(tag))


def ints(tag, shape, lo, hi):
    """Small integers as floats, so comparisons hit ties."""
    return torch.randint(lo, hi, shape, generator=gen(tag)).float()


def shp(t):
    return list(t.shape)


# ---------------------------------------------------------------- elementwise


def elementwise():
    s = Suite("elementwise")
    wide = torch.cat([torch.linspace(-20, 20, 81), torch.tensor([-1e-4, 1e-4, -1e-30, 0.0, 0.5, -0.5, 3.0, -3.0])])
    unary_inputs = {
        "neg": [randn("neg", 7, 13)],
        "exp": [uniform("exp", [5, 13], -10, 10), torch.tensor([-104.0, -100.0, -87.0, 0.0, 1e-7, 80.0, 88.5, 89.0])],
        "log": [uniform("log", [7, 13], 1e-3, 100), torch.tensor([1e-30, 1e-10, 1.0 - 2**-20, 1.0, 1e10, 3e38, 0.0, -1.0])],
        "sqrt": [uniform("sqrt", [7, 13], 0, 50), torch.tensor([0.0, 1e-30, 2.0, 1e30, -1.0])],
        "rsqrt": [uniform("rsqrt", [7, 13], 1e-3, 50), torch.tensor([0.0, 1e-30, 2.0, 1e30, 4.0])],
        "abs": [randn("abs", 3, 7, 5)],
        "sigmoid": [randn("sigmoid", 7, 13, scale=4), torch.tensor([-100.0, -88.0, -30.0, -15.0, 0.0, 15.0, 30.0, 100.0])],
        "relu": [randn("relu", 7, 13)],
        "tanh": [randn("tanh", 7, 13, scale=3), wide],
        "erf": [randn("erf", 7, 13, scale=2), wide, torch.tensor([-1e-6, 1e-6, 2.4999, 2.5, 2.5001, -5.9, 6.0, 6.1])],
    }
    for op, xs in unary_inputs.items():
        for x in xs:
            s.case(op, f"{op} {shp(x)}", [("x", x)], getattr(torch, op)(x))
    # NaN, infinities and signed zeros (torch keeps relu(NaN) = NaN and relu(-0) = -0).
    inf, nan = float("inf"), float("nan")
    specials = torch.tensor([nan, -0.0, 0.0, -inf, inf, -1.0, 1.0])
    for op in unary_inputs:
        s.case(op, f"{op} of NaN, +-0, +-inf", [("x", specials)], getattr(torch, op)(specials))
    for approx in ["none", "tanh"]:
        # gelu(+-inf) is NaN in torch's vectorised path (inf * 0): only NaN and zeros here.
        for x in [randn(f"gelu{approx}", 7, 13, scale=2), wide, torch.tensor([nan, -0.0, 0.0, 1.0])]:
            s.case("gelu", f"gelu({approx}) {shp(x)}", [("x", x)], F.gelu(x, approximate=approx), {"approximate": approx})

    # Binary ops with broadcasting in both directions, size-1 dims and scalar operands.
    pairs = [
        ("same", [7, 13], [7, 13]),
        ("b broadcasts", [3, 7, 13], [13]),
        ("a broadcasts", [13], [3, 7, 13]),
        ("both ways", [7, 1, 13], [5, 1]),
        ("size-1 dims", [1, 7], [5, 1]),
        ("rank-0 b", [3, 33], []),
    ]
    for op in ["add", "sub", "mul", "div", "maximum", "minimum"]:
        for label, sa, sb in pairs:
            a = randn(f"{op}a{label}", *sa)
            b = randn(f"{op}b{label}", *sb)
            s.case(op, f"{op} {sa} {sb} ({label})", [("a", a), ("b", b)], getattr(torch, op)(a, b))
        a = randn(f"{op}scalar", 7, 13)
        s.case(op, f"{op} [7, 13] with a scalar 2.5", [("a", a)], getattr(torch, op)(a, torch.tensor(2.5)), {"scalar": 2.5})
    for op in ["maximum", "minimum"]:
        a = torch.tensor([1.0, float("nan"), 3.0, float("nan"), -0.0, float("inf")])
        b = torch.tensor([float("nan"), 2.0, 1.0, float("nan"), 0.0, 5.0])
        s.case(op, f"{op} propagates NaN", [("a", a), ("b", b)], getattr(torch, op)(a, b))
    # pow: fractional exponents on positive bases (tensor and scalar exponents).
    for label, sa, sb in pairs[:4]:
        a = uniform(f"powa{label}", sa, 0.01, 10)
        b = uniform(f"powb{label}", sb, -2.5, 2.5)
        s.case("pow", f"pow {sa} {sb} ({label})", [("a", a), ("b", b)], torch.pow(a, b))
    # C's pow rules, which torch follows and JS's ** does not: pow(1, NaN) = 1, pow(-1, +-inf) = 1.
    a = torch.tensor([1.0, 1.0, -1.0, -1.0, nan, 0.0, 0.0, 2.0, -8.0, inf, 0.5])
    b = torch.tensor([nan, inf, inf, -inf, 0.0, -1.0, 0.5, -inf, 1 / 3, -0.5, inf])
    s.case("pow", "pow special cases (C rules)", [("a", a), ("b", b)], torch.pow(a, b))
    for e in [0.5, 1.5, -0.75, 2.0, 3.0]:
        a = uniform(f"pow{e}", [7, 13], 0.001, 20)
        s.case("pow", f"pow [7, 13] ** {e}", [("a", a)], torch.pow(a, torch.tensor(e)), {"scalar": e})

    for op, fn in [("eq", torch.eq), ("lt", torch.lt), ("le", torch.le), ("gt", torch.gt), ("ge", torch.ge)]:
        for label, sa, sb in [pairs[0], pairs[3]]:
            a = ints(f"{op}a{label}", sa, -2, 3)
            b = ints(f"{op}b{label}", sb, -2, 3)
            s.case(op, f"{op} {sa} {sb} ({label}, with ties)", [("a", a), ("b", b)], fn(a, b).float())
        a = ints(f"{op}scalar", [7, 13], -2, 3)
        s.case(op, f"{op} [7, 13] with a scalar 1", [("a", a)], fn(a, torch.tensor(1.0)).float(), {"scalar": 1.0})

    for label, sc, sa, sb in [("same", [7, 13], [7, 13], [7, 13]), ("broadcast", [7, 1], [13], [3, 1, 1])]:
        c = ints(f"wherec{label}", sc, 0, 2)
        a = randn(f"wherea{label}", *sa)
        b = randn(f"whereb{label}", *sb)
        s.case("where", f"where {sc} {sa} {sb} ({label})", [("cond", c), ("a", a), ("b", b)], torch.where(c != 0, a, b))

    x = torch.cat([randn("casti", 33, scale=5), torch.tensor([-2.7, -0.5, 0.5, 2.7, -3.0, 1e6])])
    s.case("cast", "cast f32 -> i32 truncates toward zero", [("x", x)], x.to(torch.int32), {"dtype": "i32"})
    n = torch.randint(-1000, 1000, (5, 7), generator=gen("castf"), dtype=torch.int32)
    s.case("cast", "cast i32 -> f32", [("x", n)], n.float(), {"dtype": "f32"})
    x = randn("castb", 7, 13, scale=100)
    s.case("cast", "cast f32 -> bf16 rounds to nearest even", [("x", x)], x.to(torch.bfloat16).float(), {"dtype": "bf16"})

    for lo, hi in [(-0.5, 0.75), (None, 0.25), (-0.25, None)]:
        x = randn(f"clamp{lo}{hi}", 7, 13)
        s.case("clamp", f"clamp [7, 13] to [{lo}, {hi}]", [("x", x)], torch.clamp(x, lo, hi), {"min": lo, "max": hi})
    return s


# ---------------------------------------------------------------- reductions and normalisations


def reductions():
    s = Suite("reduce")
    fns = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}
    for op, fn in fns.items():
        for axes, keep in [([-1], False), ([0], True), ([1], False), ([0, 2], False), ([-3, -1], True), ([0, 1, 2], False)]:
            x = randn(f"{op}{axes}{keep}", 3, 7, 13)
            s.case(op, f"{op} [3, 7, 13] over {axes} keepdim={keep}", [("x", x)], fn(x, dim=axes, keepdim=keep), {"axes": axes, "keepdim": keep})
        x = randn(f"{op}4d", 2, 3, 5, 7)
        s.case(op, f"{op} [2, 3, 5, 7] over [1, 3]", [("x", x)], fn(x, dim=[1, 3]), {"axes": [1, 3], "keepdim": False})
    x = randn("maxnan", 3, 5)
    x[1, 2] = float("nan")
    s.case("max", "max propagates NaN", [("x", x)], torch.amax(x, dim=[1]), {"axes": [1], "keepdim": False})
    x = randn("maxneg", 4, 6) - 100
    s.case("max", "max of all-negative rows", [("x", x)], torch.amax(x, dim=[-1]), {"axes": [-1], "keepdim": False})

    for axis in [0, 1, -1, -2]:
        x = randn(f"softmax{axis}", 3, 7, 13, scale=3)
        s.case("softmax", f"softmax [3, 7, 13] axis {axis}", [("x", x)], torch.softmax(x, dim=axis), {"axis": axis})
    x = randn("softmaxbig", 4, 33, scale=50)
    s.case("softmax", "softmax with logits of magnitude ~100", [("x", x)], torch.softmax(x, dim=-1), {"axis": -1})
    x = randn("softmaxinf", 4, 9)
    x[:, 5:] = float("-inf")
    x[2, 0:5] = float("-inf")
    x[2, 5] = 0.0
    s.case("softmax", "softmax with -inf (masked) entries", [("x", x)], torch.softmax(x, dim=-1), {"axis": -1})

    for label, w, b, eps in [("affine", True, True, 1e-5), ("no affine", False, False, 1e-5), ("weight only", True, False, 1e-6)]:
        x = randn(f"ln{label}", 4, 7, 33, scale=2) + 3
        ins = [("x", x)]
        wt = randn(f"lnw{label}", 33) if w else None
        bt = randn(f"lnb{label}", 33) if b else None
        if wt is not None:
            ins.append(("weight", wt))
        if bt is not None:
            ins.append(("bias", bt))
        y = F.layer_norm(x, (33,), wt, bt, eps)
        s.case("layerNorm", f"layerNorm [4, 7, 33] {label} eps={eps}", ins, y, {"eps": eps})

    for shape, groups, affine in [([2, 12, 5, 7], 1, True), ([2, 12, 5, 7], 3, True), ([2, 12, 5, 7], 12, False), ([2, 12, 5, 7], 4, False), ([2, 6, 11], 2, True), ([3, 8], 4, True)]:
        tag = f"gn{shape}{groups}"
        x = randn(tag, *shape, scale=2) + 1
        c = shape[1]
        ins = [("x", x)]
        wt = randn(tag + "w", c) if affine else None
        bt = randn(tag + "b", c) if affine else None
        if affine:
            ins += [("weight", wt), ("bias", bt)]
        y = F.group_norm(x, groups, wt, bt, 1e-5)
        s.case("groupNorm", f"groupNorm {shape} groups={groups} affine={affine}", ins, y, {"groups": groups, "eps": 1e-5})
    return s


# ---------------------------------------------------------------- layout


def layout():
    s = Suite("layout")
    x = randn("reshape", 3, 7, 13)
    s.case("reshape", "reshape [3, 7, 13] -> [21, -1]", [("x", x)], x.reshape(21, -1), {"shape": [21, -1]})
    s.case("reshape", "reshape [3, 7, 13] -> [13, 3, 7]", [("x", x)], x.reshape(13, 3, 7), {"shape": [13, 3, 7]})
    x = randn("flatten", 2, 3, 5, 7)
    s.case("flatten", "flatten [2, 3, 5, 7] dims 1..2", [("x", x)], x.flatten(1, 2), {"start": 1, "end": 2})
    s.case("flatten", "flatten [2, 3, 5, 7] dims -2..-1", [("x", x)], x.flatten(-2, -1), {"start": -2, "end": -1})
    s.case("unsqueeze", "unsqueeze [2, 3, 5, 7] at -1", [("x", x)], x.unsqueeze(-1), {"axis": -1})
    s.case("unsqueeze", "unsqueeze [2, 3, 5, 7] at 1", [("x", x)], x.unsqueeze(1), {"axis": 1})
    y = randn("squeeze", 3, 1, 7)
    s.case("squeeze", "squeeze [3, 1, 7] at -2", [("x", y)], y.squeeze(-2), {"axis": -2})
    for perm in [[0, 2, 3, 1], [3, 1, 0, 2], [-1, 0, -2, 1]]:
        s.case("permute", f"permute [2, 3, 5, 7] by {perm}", [("x", x)], x.permute(*perm), {"perm": perm})
    for a, b in [(0, 1), (-1, -3), (1, 3)]:
        s.case("transpose", f"transpose [2, 3, 5, 7] axes {a}, {b}", [("x", x)], x.transpose(a, b), {"a": a, "b": b})
    s.case("mT", "mT of [2, 3, 5, 7]", [("x", x)], x.mT)

    x = randn("roll", 2, 7, 13, 5)
    for shifts, axes in [([3], [1]), ([-2], [2]), ([-3, 3], [1, 2]), ([15], [-2]), ([-9, 4], [-3, 1]), ([2, 2], [1, 1])]:
        s.case("roll", f"roll [2, 7, 13, 5] by {shifts} on {axes}", [("x", x)], torch.roll(x, shifts, axes), {"shifts": shifts, "axes": axes})

    x = randn("slice", 5, 13, 7)
    for axis, start, end, step in [(1, 2, 11, 1), (1, 1, None, 2), (-1, -5, -1, 1), (1, -8, 100, 3), (0, 0, 5, 4), (2, -100, 3, 1), (1, 9, 4, 1)]:
        idx = [slice(None)] * 3
        idx[axis] = slice(start, end, step)
        s.case("slice", f"slice [5, 13, 7] axis {axis} [{start}:{end}:{step}]", [("x", x)], x[tuple(idx)], {"axis": axis, "start": start, "end": end, "step": step})
    # The op itself slices every axis at once; the DSL emits one axis per call.
    y = x[1:5:3, 2:13:4, 0:7:2]
    s.case("slice", "slice op on all axes at once", [("x", x)], y, {"starts": [1, 2, 0], "ends": [5, 13, 7], "steps": [3, 4, 2]}, via="graph")

    a, b, c = randn("cat0", 2, 3, 5), randn("cat1", 1, 3, 5), randn("cat2", 4, 3, 5)
    s.case("concat", "concat three tensors on axis 0", [("a", a), ("b", b), ("c", c)], torch.cat([a, b, c], 0), {"axis": 0})
    a, b = randn("cat3", 2, 3, 5), randn("cat4", 2, 3, 7)
    s.case("concat", "concat on axis -1", [("a", a), ("b", b)], torch.cat([a, b], -1), {"axis": -1})
    a, b = randn("cat5", 2, 3, 5), randn("cat6", 2, 1, 5)
    s.case("concat", "concat on axis 1", [("a", a), ("b", b)], torch.cat([a, b], 1), {"axis": 1})

    x = randn("pad", 2, 3, 5, 7)
    for pads, value in [([[0, 0], [0, 0], [1, 2], [3, 0]], 0.0), ([[1, 0], [0, 2], [0, 0], [2, 2]], -1.5), ([[0, 0], [0, 0], [0, 3], [0, 1]], 0.0)]:
        torch_pads = [p for pair in reversed(pads) for p in pair]
        s.case("pad", f"pad [2, 3, 5, 7] by {pads} with {value}", [("x", x)], F.pad(x, torch_pads, value=value), {"pads": pads, "value": value})

    # take with a rank-2 index: the relative-position-bias gather of window attention.
    w = 3
    table = randn("take", (2 * w - 1) ** 2, 4)
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
    index = (rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]).to(torch.int32)
    s.case("take", "take relative-position table [25, 4] by index [9, 9] axis 0", [("x", table), ("index", index)], take(table, index, 0), {"axis": 0})
    x = randn("take1", 3, 7, 5)
    idx = torch.randint(0, 7, (2, 4), generator=gen("takei"), dtype=torch.int32)
    s.case("take", "take [3, 7, 5] by index [2, 4] axis 1", [("x", x), ("index", idx)], take(x, idx, 1), {"axis": 1})
    idx = torch.tensor([4, 0, 4, 2], dtype=torch.int32)
    s.case("take", "take [3, 7, 5] by index [4] axis -1", [("x", x), ("index", idx)], take(x, idx, -1), {"axis": -1})

    x = randn("bcast", 7, 1)
    s.case("broadcastTo", "broadcastTo [7, 1] -> [3, 7, 5]", [("x", x)], x.expand(3, 7, 5), {"shape": [3, 7, 5]})
    x = randn("bcast2", 1, 5)
    s.case("broadcastTo", "broadcastTo [1, 5] -> [2, 4, 5]", [("x", x)], x.expand(2, 4, 5), {"shape": [2, 4, 5]})

    x = randn("ps", 2, 12, 3, 5)
    s.case("pixelShuffle", "pixelShuffle [2, 12, 3, 5] factor 2", [("x", x)], F.pixel_shuffle(x, 2), {"factor": 2})
    x = randn("ps3", 1, 18, 2, 3)
    s.case("pixelShuffle", "pixelShuffle [1, 18, 2, 3] factor 3", [("x", x)], F.pixel_shuffle(x, 3), {"factor": 3})
    return s


def take(x, index, axis):
    """numpy.take along one axis with an index tensor of any shape, written with torch ops."""
    axis = axis % x.dim()
    flat = torch.index_select(x, axis, index.flatten().long())
    return flat.reshape(*x.shape[:axis], *index.shape, *x.shape[axis + 1 :])


# ---------------------------------------------------------------- contractions and resampling


def nn_ops():
    s = Suite("nn")
    cases = [
        ("plain", [7, 13], [13, 5], {}),
        ("odd 33", [33, 33], [33, 7], {}),
        ("batched", [2, 3, 7, 13], [2, 3, 13, 5], {}),
        ("batch broadcast b", [2, 3, 7, 13], [13, 5], {}),
        ("batch broadcast both", [2, 1, 7, 13], [3, 13, 5], {}),
        ("b.mT", [2, 7, 13], [2, 5, 13], {"mTb": True}),
        ("a.mT", [2, 13, 7], [13, 5], {"mTa": True}),
    ]
    for label, sa, sb, args in cases:
        a, b = randn(f"mma{label}", *sa), randn(f"mmb{label}", *sb)
        y = torch.matmul(a.mT if args.get("mTa") else a, b.mT if args.get("mTb") else b)
        s.case("matmul", f"matmul {sa} x {sb} ({label})", [("a", a), ("b", b)], y, args)
    for ta, tb in [(True, False), (False, True), (True, True)]:
        sa = [3, 13, 7] if ta else [3, 7, 13]
        sb = [1, 5, 13] if tb else [1, 13, 5]
        a, b = randn(f"mmt{ta}{tb}a", *sa), randn(f"mmt{ta}{tb}b", *sb)
        y = torch.matmul(a.mT if ta else a, b.mT if tb else b)
        s.case("matmul", f"matmul op transA={ta} transB={tb}", [("a", a), ("b", b)], y, {"transA": ta, "transB": tb}, via="graph")

    convs = [
        ("3x3 pad 1", [2, 4, 9, 11], [6, 4, 3, 3], dict(stride=1, padding=1, dilation=1, groups=1), True),
        ("stride 2 odd input", [1, 3, 13, 11], [5, 3, 3, 3], dict(stride=2, padding=0, dilation=1, groups=1), True),
        ("dilation 2", [1, 3, 13, 13], [4, 3, 3, 3], dict(stride=1, padding=2, dilation=2, groups=1), False),
        ("groups 2", [2, 6, 7, 7], [4, 3, 3, 3], dict(stride=1, padding=1, dilation=1, groups=2), True),
        ("depthwise 7x7", [1, 8, 9, 9], [8, 1, 7, 7], dict(stride=1, padding=3, dilation=1, groups=8), True),
        ("patch embed 4x4 stride 4", [2, 3, 28, 28], [16, 3, 4, 4], dict(stride=4, padding=0, dilation=1, groups=1), True),
        ("non-square", [1, 2, 10, 9], [3, 2, 3, 2], dict(stride=[2, 1], padding=[1, 0], dilation=[1, 2], groups=1), True),
        ("1x1", [2, 8, 5, 5], [3, 8, 1, 1], dict(stride=1, padding=0, dilation=1, groups=1), False),
    ]
    for label, sx, sw, opts, bias in convs:
        x, w = randn(f"cx{label}", *sx), randn(f"cw{label}", *sw, scale=0.3)
        b = randn(f"cb{label}", sw[0]) if bias else None
        ins = [("x", x), ("weight", w)] + ([("bias", b)] if bias else [])
        y = F.conv2d(x, w, b, stride=opts["stride"], padding=opts["padding"], dilation=opts["dilation"], groups=opts["groups"])
        s.case("conv2d", f"conv2d {sx} * {sw} {label}", ins, y, opts)

    ups = [
        ([2, 3, 7, 7], [12, 12], "nearest", False),
        ([1, 2, 4, 5], [8, 10], "nearest", False),
        ([1, 2, 5, 3], [11, 7], "nearest", False),
        ([1, 2, 12, 9], [7, 5], "nearest", False),
        ([2, 3, 7, 7], [12, 12], "bilinear", False),
        ([2, 3, 7, 7], [12, 12], "bilinear", True),
        ([1, 2, 3, 4], [8, 9], "bilinear", False),
        ([1, 2, 3, 4], [8, 9], "bilinear", True),
        ([1, 2, 12, 9], [7, 5], "bilinear", False),
        ([1, 2, 12, 9], [7, 5], "bilinear", True),
        ([1, 1, 1, 3], [4, 1], "bilinear", True),
    ]
    for sx, size, mode, align in ups:
        x = randn(f"up{sx}{size}{mode}{align}", *sx)
        y = F.interpolate(x, size=size, mode=mode, align_corners=align if mode == "bilinear" else None)
        s.case("upsample", f"upsample {sx} -> {size} {mode} alignCorners={align}", [("x", x)], y, {"size": size, "mode": mode, "alignCorners": align})
    x = randn("upscale", 1, 2, 5, 3)
    s.case("upsample", "upsample [1, 2, 5, 3] scale 2 nearest", [("x", x)], F.interpolate(x, scale_factor=2, mode="nearest"), {"scale": 2, "mode": "nearest", "alignCorners": False})
    return s


# ---------------------------------------------------------------- DSL compositions


def compositions():
    s = Suite("compositions")
    for red in ["mean", "sum", "none"]:
        p, t = randn(f"l1p{red}", 3, 7, 5), randn(f"l1t{red}", 3, 7, 5)
        s.case("l1Loss", f"l1Loss reduction={red}", [("pred", p), ("target", t)], F.l1_loss(p, t, reduction=red), {"reduction": red})
        s.case("mseLoss", f"mseLoss reduction={red}", [("pred", p), ("target", t)], F.mse_loss(p, t, reduction=red), {"reduction": red})

    def ce(title, logits, target, ignore, red):
        y = F.cross_entropy(logits, target.long(), ignore_index=ignore, reduction=red)
        s.case("crossEntropy", title, [("logits", logits), ("target", target)], y, {"ignoreIndex": ignore, "reduction": red})

    logits = randn("ce", 13, 7, scale=3)
    target = torch.randint(0, 7, (13,), generator=gen("cet"), dtype=torch.int32)
    target[[2, 5, 11]] = -100
    for red in ["mean", "sum", "none"]:
        ce(f"crossEntropy [13, 7] ignore -100 reduction={red}", logits, target, -100, red)
    logits = randn("ceseg", 2, 5, 4, 3, scale=2)
    target = torch.randint(0, 5, (2, 4, 3), generator=gen("cesegt"), dtype=torch.int32)
    target[0, 1:3, :] = 255
    target[1, 0, 2] = 255
    ce("crossEntropy [2, 5, 4, 3] (segmentation) ignore 255", logits, target, 255, "mean")
    ce("crossEntropy [2, 5, 4, 3] ignore 255 reduction=none", logits, target, 255, "none")
    target = torch.full((2, 4, 3), 255, dtype=torch.int32)
    target[1, 2, 1] = 3
    ce("crossEntropy all but one target ignored", logits, target, 255, "mean")
    logits = randn("cebig", 4, 6, scale=40)
    target = torch.tensor([0, 5, 2, 3], dtype=torch.int32)
    ce("crossEntropy with large logits", logits, target, -100, "mean")

    x = randn("norm", 3, 7, 13)
    x[1, 2, :] = 0
    for axis in [-1, 1]:
        s.case("normalize", f"normalize [3, 7, 13] axis {axis} (with a zero vector)", [("x", x)], F.normalize(x, p=2.0, dim=axis, eps=1e-12), {"axis": axis})
    s.case("normalize", "normalize eps 0.5", [("x", x)], F.normalize(x, p=2.0, dim=-1, eps=0.5), {"axis": -1, "eps": 0.5})

    x, w, b = randn("lin", 2, 7, 13), randn("linw", 5, 13), randn("linb", 5)
    s.case("linear", "linear [2, 7, 13] -> 5 with bias", [("x", x), ("weight", w), ("bias", b)], F.linear(x, w, b))
    s.case("linear", "linear [2, 7, 13] -> 5 without bias", [("x", x), ("weight", w)], F.linear(x, w))
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    suites = [elementwise(), reductions(), layout(), nn_ops(), compositions()]
    manifest = {"generator": "test/golden/gen_ops.py", "torch": torch.__version__, "cases": []}
    for suite in suites:
        save_file(suite.tensors, os.path.join(OUT, f"{suite.name}.safetensors"), metadata={"generator": "test/golden/gen_ops.py"})
        manifest["cases"] += suite.cases
    write_bf16(os.path.join(OUT, "bf16.safetensors"))
    # One case per line: readable diffs when cases change.
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        head = {k: v for k, v in manifest.items() if k != "cases"}
        f.write(json.dumps(head)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c) for c in manifest["cases"]))
        f.write("\n]}\n")
    size = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"{len(manifest['cases'])} cases, {size / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()
