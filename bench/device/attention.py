"""ptc's fused window-attention kernels on a GPU against PyTorch: eager, SDPA with an additive mask,
and torch.compile of the eager chain, forward and backward, on Swin-T and PerceptNet-Large shapes.

Inputs: a folder written by bench/device/attention-cases.ts (PTX files + manifest.json: per case the
buffers and every launch the compiler makes for the forward and the backward, each param bound).
Each kernel is JIT-loaded through libcuda (ctypes) and launched on torch-allocated tensors.

Per case:
- correctness against an f32 PyTorch chain written the torchvision way (pad, roll, partition, table
  gathered by relative index, region mask, softmax, reverse, roll back, crop) through autograd: the
  output, dq/dk/dv and the table, logit-scale (V2) and pad-value gradients, as max|err| / max|ref|.
- times (CUDA events, warm-up, --reps repetitions, mean) of: ptc forward (one kernel), ptc backward
  (all its launches), and for each torch method the forward and forward+backward in training mode
  (inputs require grad; backward = torch.autograd.grad of all inputs); its backward is reported as
  (forward+backward) - forward. The torch chains get the relative index and the region mask
  precomputed (as Swin's buffers are), so only the per-step work is timed.
- bandwidth: the GPU's copy bandwidth measured in this run (dst.copy_(src), 1 GiB bf16: 2 x bytes /
  time), and each method's effective bytes/s over the same minimum traffic: forward = qkv read + out
  written; backward = qkv + out + dout read + dqkv written (scratch stats and the small table
  partials not counted), as a fraction of that copy bandwidth.
torch.compile runs after every case's other numbers, while the time budget (--budget s) allows; a
failure is recorded with its first line. The JSON (--out) is rewritten after each case.

Usage: python3 bench/device/attention.py [dir, default dist/device-attention] [--out f.json]
         [--reps 20] [--budget 85] [--no-compile]
       python3 bench/device/attention.py --check-reference   (CPU: the torch chains vs a direct
         per-token implementation of the op's definition, forward and gradients, small shapes)
"""

import ctypes
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F  # noqa: N812

HERE = os.path.dirname(os.path.abspath(__file__))
START = time.time()


# ---- the maths, as PyTorch writes it ---------------------------------------------------------------


def relative_index(M, device):
    coords = torch.stack(torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (M - 1)
    return (rel[..., 0] * (2 * M - 1) + rel[..., 1]).flatten().to(device)


def region_mask(Hp, Wp, M, shift, mask_value, device):
    """[nW, N, N]: mask_value where two tokens of a window come from different regions (torchvision)."""
    labels = torch.zeros(Hp, Wp, device=device)
    n = 0
    for hs in ((0, -M), (-M, -shift[0]), (-shift[0], None)) if shift[0] else ((0, None),):
        for ws in ((0, -M), (-M, -shift[1]), (-shift[1], None)) if shift[1] else ((0, None),):
            labels[slice(*hs), slice(*ws)] = n
            n += 1
    w = labels.view(Hp // M, M, Wp // M, M).permute(0, 2, 1, 3).reshape(-1, M * M)
    diff = w[:, :, None] - w[:, None, :]
    return torch.where(diff != 0, mask_value, 0.0)


class Geometry:
    def __init__(self, c, device):
        s = c["scalars"]
        self.B, self.H, self.W, self.C, self.heads, self.M = s["batch"], s["height"], s["width"], s["channels"], s["heads"], c["window"]
        self.d = self.C // self.heads
        self.N = self.M * self.M
        self.Hp, self.Wp = math.ceil(self.H / self.M) * self.M, math.ceil(self.W / self.M) * self.M
        self.nW = (self.Hp // self.M) * (self.Wp // self.M)
        self.shift = tuple(c["shift"])
        self.cosine, self.pad_input = c["cosine"], c["padInput"]
        self.q_scale, self.eps, self.mask_value = s["qScale"], s["normEps"], s["maskValue"]
        self.index = relative_index(self.M, device)
        self.mask = region_mask(self.Hp, self.Wp, self.M, self.shift, self.mask_value, device) if any(self.shift) else None


def partition(qkv, pad, g):
    """[B, H, W, 3C] -> q, k, v [B*nW, heads, N, d] of the padded, rolled map."""
    B, H, W, C3 = qkv.shape
    if g.pad_input:
        x = pad.view(1, 1, 1, C3).expand(B, g.Hp, g.Wp, C3).clone()
        x[:, :H, :W] = qkv
    else:
        x = qkv
    if any(g.shift):
        x = torch.roll(x, (-g.shift[0], -g.shift[1]), (1, 2))
    win = x.reshape(B, g.Hp // g.M, g.M, g.Wp // g.M, g.M, C3).permute(0, 1, 3, 2, 4, 5).reshape(-1, g.N, C3)
    return win.reshape(-1, g.N, 3, g.heads, g.d).permute(2, 0, 3, 1, 4)


def reverse(o, g):
    """[B*nW, N, C] -> [B, H, W, C]: windows back to the map, roll back, crop."""
    o = o.reshape(g.B, g.Hp // g.M, g.Wp // g.M, g.M, g.M, g.C).permute(0, 1, 3, 2, 4, 5).reshape(g.B, g.Hp, g.Wp, g.C)
    if any(g.shift):
        o = torch.roll(o, g.shift, (1, 2))
    return o[:, : g.H, : g.W]


def eager_chain(qkv, table, scale, pad, g):
    """The torchvision way: matmuls, gathered bias, region mask, softmax (every step a tensor)."""
    q, k, v = partition(qkv, pad, g)
    if g.cosine:
        attn = F.normalize(q, dim=-1, eps=g.eps) @ F.normalize(k, dim=-1, eps=g.eps).transpose(-2, -1) * scale.view(g.heads, 1, 1)
    else:
        attn = (q * g.q_scale) @ k.transpose(-2, -1)
    attn = attn + table[g.index].view(g.N, g.N, g.heads).permute(2, 0, 1)
    if g.mask is not None:
        attn = (attn.view(-1, g.nW, g.heads, g.N, g.N) + g.mask.to(attn.dtype)[None, :, None]).view(-1, g.heads, g.N, g.N)
    o = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, g.N, g.C)
    return reverse(o, g)


def sdpa_chain(qkv, table, scale, pad, g):
    """The same with F.scaled_dot_product_attention and an additive mask (bias + region mask)."""
    q, k, v = partition(qkv, pad, g)
    # [B, nW*heads, N, d]: the mask [1, nW*heads, N, N] broadcasts over the batch.
    q, k, v = (t.reshape(g.B, g.nW * g.heads, g.N, g.d) for t in (q, k, v))
    bias = table[g.index].view(g.N, g.N, g.heads).permute(2, 0, 1)
    mask = bias[None] + (g.mask.to(bias.dtype)[:, None] if g.mask is not None else torch.zeros(g.nW, 1, 1, 1, dtype=bias.dtype, device=bias.device))
    mask = mask.reshape(1, g.nW * g.heads, g.N, g.N)
    if g.cosine:
        q = F.normalize(q, dim=-1, eps=g.eps) * scale.view(1, 1, g.heads).expand(1, g.nW, g.heads).reshape(1, g.nW * g.heads, 1, 1)
        k = F.normalize(k, dim=-1, eps=g.eps)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    else:
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=g.q_scale)
    o = o.reshape(g.B * g.nW, g.heads, g.N, g.d).transpose(1, 2).reshape(-1, g.N, g.C)
    return reverse(o, g)


def direct_reference(qkv, table, scale, pad, g):
    """The op's definition (compiler/ir/ops/fused.ts), token by token: rolled-map position p reads the
    map at (p + shift) mod padded, padding reads pad; logits per (window, head); f32 or f64."""
    B, H, W, C3 = qkv.shape
    M, N, C, d = g.M, g.N, g.C, g.d
    out = torch.zeros(B, H, W, C, dtype=qkv.dtype)

    def region(p, P, s):
        return 0 if s == 0 else (0 if p < P - M else 1 if p < P - s else 2)

    for b in range(B):
        for wy in range(g.Hp // M):
            for wx in range(g.Wp // M):
                rows, src, reg = [], [], []
                for t in range(N):
                    py, px = wy * M + t // M, wx * M + t % M
                    y, x = (py + g.shift[0]) % g.Hp, (px + g.shift[1]) % g.Wp
                    rows.append(qkv[b, y, x] if y < H and x < W else pad)
                    src.append((y, x) if y < H and x < W else None)
                    reg.append(region(py, g.Hp, g.shift[0]) * 3 + region(px, g.Wp, g.shift[1]))
                tok = torch.stack(rows)  # [N, 3C]
                for h in range(g.heads):
                    q, k, v = (tok[:, i * C + h * d : i * C + (h + 1) * d] for i in range(3))
                    if g.cosine:
                        logit = (q / q.norm(dim=-1, keepdim=True).clamp_min(g.eps)) @ (k / k.norm(dim=-1, keepdim=True).clamp_min(g.eps)).T * scale[h]
                    else:
                        logit = (q * g.q_scale) @ k.T
                    for i in range(N):
                        for j in range(N):
                            dy, dx = i // M - j // M + M - 1, i % M - j % M + M - 1
                            extra = table[dy * (2 * M - 1) + dx, h]
                            if any(g.shift) and reg[i] != reg[j]:
                                extra = extra + g.mask_value
                            logit[i, j] = logit[i, j] + extra
                    o = logit.softmax(-1) @ v
                    for i in range(N):
                        if src[i] is not None:
                            out[b, src[i][0], src[i][1], h * d : (h + 1) * d] = o[i]
    return out


def check_reference():
    """CPU, f64: eager and SDPA chains vs the direct definition, outputs and all gradients."""
    torch.manual_seed(0)
    cases = [
        dict(name="V1 shifted", batch=2, height=8, width=8, heads=2, headDim=8, window=4, shift=[2, 2], cosine=False, padInput=False),
        dict(name="V1 unshifted", batch=1, height=8, width=8, heads=2, headDim=8, window=4, shift=[0, 0], cosine=False, padInput=False),
        dict(name="V2 padded shifted", batch=2, height=7, width=6, heads=2, headDim=8, window=4, shift=[2, 2], cosine=True, padInput=True),
        dict(name="V2 one window", batch=2, height=4, width=4, heads=3, headDim=8, window=4, shift=[0, 0], cosine=True, padInput=False),
    ]
    worst = 0.0
    for c in cases:
        C = c["heads"] * c["headDim"]
        c["scalars"] = dict(batch=c["batch"], height=c["height"], width=c["width"], channels=C, heads=c["heads"],
                            qScale=1.0 if c["cosine"] else c["headDim"] ** -0.5, normEps=1e-12, maskValue=-100.0)
        g = Geometry(c, "cpu")
        M, heads = c["window"], c["heads"]
        dt = torch.float64
        leaves = [torch.randn(c["batch"], c["height"], c["width"], 3 * C, dtype=dt), torch.randn((2 * M - 1) ** 2, heads, dtype=dt),
                  (8 + 2 * torch.rand(heads, dtype=dt)), 0.5 * torch.randn(3 * C, dtype=dt)]
        dout = torch.randn(c["batch"], c["height"], c["width"], C, dtype=dt)
        used = [0, 1] + ([2] if c["cosine"] else []) + ([3] if c["padInput"] else [])
        results = {}
        for name, fn in (("direct", direct_reference), ("eager", eager_chain), ("sdpa", sdpa_chain)):
            xs = [t.clone().requires_grad_(i in used) for i, t in enumerate(leaves)]
            y = fn(*xs, g)
            grads = torch.autograd.grad(y, [xs[i] for i in used], dout)
            results[name] = [y.detach(), *grads]
        names = ["out", "dqkv", "dtable"] + (["dscale"] if c["cosine"] else []) + (["dpad"] if c["padInput"] else [])
        for other in ("eager", "sdpa"):
            errs = [rel_err(a, b) for a, b in zip(results[other], results["direct"])]
            worst = max(worst, *errs)
            print(f"{c['name']}: {other} vs direct: " + ", ".join(f"{n} {e:.1e}" for n, e in zip(names, errs)))
    ok = worst < 1e-9
    print(f"worst max|err|/max|ref| {worst:.1e} (f64; bound 1e-9): {'ok' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


def rel_err(a, ref):
    return ((a.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-30)).item()


# ---- the GPU run ------------------------------------------------------------------------------------


class Driver:
    def __init__(self, folder):
        self.folder = folder
        self.cuda = ctypes.CDLL("libcuda.so.1")
        self.modules = {}

    def check(self, r, what):
        if r != 0:
            name = ctypes.c_char_p()
            self.cuda.cuGetErrorName(r, ctypes.byref(name))
            raise RuntimeError(f"{what}: {name.value.decode() if name.value else r}")

    def function(self, ptx, kernel):
        if ptx not in self.modules:
            text = open(os.path.join(self.folder, ptx), "rb").read() + b"\0"
            log = ctypes.create_string_buffer(8192)
            opts = (ctypes.c_int * 2)(5, 6)  # CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
            vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(8192))
            mod = ctypes.c_void_p()
            r = self.cuda.cuModuleLoadDataEx(ctypes.byref(mod), ctypes.c_char_p(text), 2, opts, vals)
            if r != 0:
                raise RuntimeError(f"JIT of {ptx} failed ({r}): {log.value.decode(errors='replace')}")
            self.modules[ptx] = mod
        fn = ctypes.c_void_p()
        self.check(self.cuda.cuModuleGetFunction(ctypes.byref(fn), self.modules[ptx], kernel.encode()), f"cuModuleGetFunction {kernel}")
        return fn

    def launcher(self, spec, buffers):
        """A no-argument function that launches `spec` (a manifest launch) on the named torch buffers."""
        fn = self.function(spec["ptx"], spec["name"])
        keep = []
        for a in spec["args"]:
            if "buffer" in a:
                t = buffers[a["buffer"]]
                keep.append(ctypes.c_uint64(t.data_ptr() + a["offset"] * t.element_size()))
            elif a["type"] == "f32":
                keep.append(ctypes.c_float(a["value"]))
            else:
                keep.append(ctypes.c_int32(int(a["value"])))
        params = (ctypes.c_void_p * len(keep))(*[ctypes.cast(ctypes.pointer(x), ctypes.c_void_p) for x in keep])
        gx, gy, gz = spec["grid"]
        cuda, block, name = self.cuda, spec["block"], spec["name"]

        def run():
            stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
            r = cuda.cuLaunchKernel(fn, gx, gy, gz, block, 1, 1, 0, stream, params, None)
            if r != 0:
                self.check(r, name)

        run.keep = (keep, params)  # the argument storage lives as long as the launcher
        return run


def timed(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps * 1e-3


def copy_bandwidth(reps=10):
    n = 512 * 1024 * 1024  # 1 GiB of bf16
    src = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), reps)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n * 2 / t


def torch_method(fn, leaves, dout, g, reps):
    """Training-mode forward and forward+backward times of fn(*leaves, g)."""

    def fwd():
        return fn(*leaves, g)

    def fwd_bwd():
        return torch.autograd.grad(fn(*leaves, g), [x for x in leaves if x is not None and x.requires_grad], dout)

    t_fwd = timed(fwd, reps)
    t_all = timed(fwd_bwd, reps)
    return {"forward_s": t_fwd, "forward_backward_s": t_all, "backward_s": t_all - t_fwd}


def first_line(e):
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def run_case(c, drv, bw, reps, gen):
    g = Geometry(c, "cuda")
    bufs = c["buffers"]
    bf = dict(device="cuda", dtype=torch.bfloat16)
    shape_qkv = (g.B, g.H, g.W, 3 * g.C)
    shape_out = (g.B, g.H, g.W, g.C)
    T = (2 * g.M - 1) ** 2
    qkv = torch.randn(shape_qkv, generator=gen, device="cuda").to(torch.bfloat16)
    table = torch.randn(T, g.heads, generator=gen, device="cuda").to(torch.bfloat16)
    scale = (8 + 2 * torch.rand(g.heads, generator=gen, device="cuda")).to(torch.bfloat16) if g.cosine else None
    pad = (0.5 * torch.randn(3 * g.C, generator=gen, device="cuda")).to(torch.bfloat16) if g.pad_input else None
    dout = torch.randn(shape_out, generator=gen, device="cuda").to(torch.bfloat16)
    given = dict(qkv=qkv, table=table, scale=scale, padValue=pad, dout=dout)
    buffers = {}
    for name, b in bufs.items():
        if given.get(name) is not None:
            assert given[name].numel() == b["numel"], f"{name}: manifest says {b['numel']} elements, have {given[name].numel()}"
            buffers[name] = given[name].reshape(-1)
        else:
            buffers[name] = torch.zeros(b["numel"], device="cuda", dtype=torch.bfloat16 if b["dtype"] == "bf16" else torch.float32)
    fwd = [drv.launcher(s, buffers) for s in c["launches"]["forward"]]
    bwd = [drv.launcher(s, buffers) for s in c["launches"]["backward"]]

    def run_fwd():
        for f in fwd:
            f()

    def run_bwd():
        for f in bwd:
            f()

    row = {"case": c["name"], "window": g.M, "headDim": g.d, "heads": g.heads, "batch": g.B, "map": [g.H, g.W], "shift": list(g.shift),
           "cosine": g.cosine, "padInput": g.pad_input, "launches": {k: [s["name"] for s in v] for k, v in c["launches"].items()}}

    # Correctness: the f32 chain through autograd.
    used = [x is not None for x in (qkv, table, scale, pad)]
    ref_leaves = [x.float().requires_grad_(True) if x is not None else None for x in (qkv, table, scale, pad)]
    ref = eager_chain(*ref_leaves, g)
    ref_grads = torch.autograd.grad(ref, [x for x in ref_leaves if x is not None], dout.float())
    ref = ref.detach()
    run_fwd()
    torch.cuda.synchronize()
    run_bwd()
    torch.cuda.synchronize()
    out = buffers["out"].view(shape_out).float()
    packed = buffers["dqkv"].float()
    sz = c["sizes"]
    dqkv = packed[: sz["qkv"]].view(shape_qkv)
    err = {"out": rel_err(out, ref)}
    for i, n in enumerate("qkv"):
        err[f"d{n}"] = rel_err(dqkv[..., i * g.C : (i + 1) * g.C], ref_grads[0][..., i * g.C : (i + 1) * g.C])
    at = sz["qkv"]
    err["dtable"] = rel_err(packed[at : at + sz["table"]].view(T, g.heads), ref_grads[1])
    at += sz["table"]
    gi = 2
    if g.cosine:
        err["dscale"] = rel_err(packed[at : at + sz["scale"]], ref_grads[gi])
        gi += 1
    at += sz["scale"]
    if g.pad_input:
        err["dpad"] = rel_err(packed[at : at + sz["padValue"]], ref_grads[gi])
    row["err_over_max_ref"] = err
    del ref_leaves, ref, ref_grads
    print(f"{c['name']}: max|err|/max|ref| " + ", ".join(f"{k} {v:.2e}" for k, v in err.items()), flush=True)

    # Bytes: the minimum traffic of each direction (bf16).
    bytes_fwd = 2 * (qkv.numel() + dout.numel())
    bytes_bwd = 2 * (2 * qkv.numel() + 2 * dout.numel())
    row["bytes"] = {"forward": bytes_fwd, "backward": bytes_bwd}
    t_f = timed(run_fwd, reps)
    t_b = timed(run_bwd, reps)
    methods = {"ptc": {"forward_s": t_f, "backward_s": t_b, "forward_backward_s": t_f + t_b}}
    leaves = [x.detach().clone().requires_grad_(True) if x is not None else None for x in (qkv, table, scale, pad)]
    for name, fn in (("eager", eager_chain), ("sdpa", sdpa_chain)):
        try:
            if name == "sdpa":  # the SDPA chain against the f32 reference too (a wrong baseline is no baseline)
                with torch.no_grad():
                    ref = eager_chain(*[x.float() if x is not None else None for x in leaves], g)
                    row.setdefault("baseline_err_over_max_ref", {})[name] = rel_err(fn(*leaves, g), ref)
                    del ref
            methods[name] = torch_method(fn, leaves, dout, g, reps)
        except Exception as e:  # noqa: BLE001  (an unsupported SDPA configuration is a result, not a crash)
            methods[name] = {"error": first_line(e)}
    del used
    for m in methods.values():
        if "forward_s" in m:
            m["forward_bytes_per_s"] = bytes_fwd / m["forward_s"]
            m["forward_of_copy_bw"] = bytes_fwd / m["forward_s"] / bw
            m["backward_bytes_per_s"] = bytes_bwd / m["backward_s"] if m["backward_s"] > 0 else None
            m["backward_of_copy_bw"] = bytes_bwd / m["backward_s"] / bw if m["backward_s"] > 0 else None
    row["methods"] = methods
    print_methods(row)
    return row, (leaves, dout, g, bytes_fwd, bytes_bwd)


def print_methods(row):
    p = row["methods"]["ptc"]
    for name, m in row["methods"].items():
        if "error" in m:
            print(f"  {name:8s} {m['error']}")
            continue
        vs = "" if name == "ptc" else f"  (ptc speedup fwd {m['forward_s'] / p['forward_s']:.2f}x, bwd {m['backward_s'] / p['backward_s']:.2f}x)"
        print(f"  {name:8s} fwd {m['forward_s'] * 1e6:9.1f} us ({m['forward_of_copy_bw']:.3f} of copy bw)  "
              f"bwd {m['backward_s'] * 1e6:9.1f} us ({(m['backward_of_copy_bw'] or 0):.3f})  fwd+bwd {m['forward_backward_s'] * 1e6:9.1f} us{vs}", flush=True)


def main():
    if "--check-reference" in sys.argv:
        return check_reference()
    argv = sys.argv[1:]
    opt = lambda k, d: argv[argv.index(k) + 1] if k in argv else d  # noqa: E731
    values = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--out", "--reps", "--budget")}
    args = [a for a in argv if not a.startswith("--") and a not in values]
    folder = args[0] if args else os.path.join(HERE, "..", "..", "dist", "device-attention")
    out_path, reps, budget = opt("--out", None), int(opt("--reps", 20)), float(opt("--budget", 85))
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the primary context, current on this thread
    drv = Driver(folder)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda, "reps": reps,
              "timing": "CUDA events, mean of reps after 2 warm-ups; torch methods in training mode, backward = (fwd+bwd) - fwd",
              "bytes": "forward: qkv read + out written; backward: qkv + out + dout read + dqkv written (bf16)", "cases": []}

    def save():
        if out_path:
            with open(out_path, "w") as f:
                json.dump(result, f, indent=1)

    bw = copy_bandwidth()
    result["copy_bytes_per_s"] = bw
    print(f"device: {result['device']}; torch {torch.__version__}; copy bandwidth {bw / 1e9:.0f} GB/s (1 GiB bf16 dst.copy_(src))", flush=True)
    save()
    gen = torch.Generator(device="cuda").manual_seed(0)
    kept = []
    for c in manifest:
        if time.time() - START > budget - 10:
            result["cases"].append({"case": c["name"], "skipped": f"time budget ({budget:.0f} s) spent"})
            continue
        try:
            row, state = run_case(c, drv, bw, reps, gen)
            kept.append((row, state))
        except Exception as e:  # noqa: BLE001  (a failed case is reported; the others still run)
            row = {"case": c["name"], "error": first_line(e)}
            print(f"{c['name']}: FAILED {row['error']}", flush=True)
        result["cases"].append(row)
        save()
        torch.cuda.empty_cache()

    # torch.compile of the eager chain (default mode), while the budget allows: ~20-40 s a case.
    if "--no-compile" in argv:
        result["compile"] = "not run (--no-compile)"
    for row, (leaves, dout, g, bytes_fwd, bytes_bwd) in kept:
        if "--no-compile" in argv:
            break
        left = budget - (time.time() - START)
        if left < 40:  # a compile is not interruptible: start one only with room for it
            row["methods"]["compile"] = {"error": f"skipped: {left:.0f} s of the {budget:.0f} s budget left"}
            continue
        try:
            torch._dynamo.reset()
            compiled = torch.compile(eager_chain, dynamic=False)
            t0 = time.time()
            torch.autograd.grad(compiled(*leaves, g), [x for x in leaves if x is not None], dout)
            torch.cuda.synchronize()
            first = time.time() - t0
            m = torch_method(compiled, leaves, dout, g, reps)
            m["compile_s"] = first  # the first forward + backward, compilation included
            m["forward_of_copy_bw"] = bytes_fwd / m["forward_s"] / bw
            m["backward_of_copy_bw"] = bytes_bwd / m["backward_s"] / bw if m["backward_s"] > 0 else None
        except Exception as e:  # noqa: BLE001  (Inductor failures are recorded with their reason)
            m = {"error": first_line(e)}
        row["methods"]["compile"] = m
        print(f"{row['case']}: torch.compile " + (m["error"] if "error" in m else
              f"fwd {m['forward_s'] * 1e6:.1f} us ({m['forward_of_copy_bw']:.3f} of copy bw), bwd {m['backward_s'] * 1e6:.1f} us, "
              f"compile {m['compile_s']:.1f} s"), flush=True)
        save()
    result["seconds"] = time.time() - START
    save()
    print(f"done in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
