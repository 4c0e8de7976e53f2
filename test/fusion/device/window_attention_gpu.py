"""The window-attention kernels on a real GPU: each case of make-cases.ts's manifest is run through
libcuda (ctypes, driver JIT of the PTX) on torch-allocated bf16 tensors and checked against a PyTorch
implementation of the same maths written the torchvision way (pad, roll, partition, bias table
gathered by the relative index, region mask, softmax, reverse, roll back, crop) in f32, forward and,
through autograd, the q/k/v gradient. Then both are timed: the kernel vs that chain in PyTorch eager
bf16 (the unfused baseline), with the fraction of the HBM bandwidth the kernel reaches (bytes =
qkv read + output written; the forward's minimum traffic).

Usage: python3 test/fusion/device/window_attention_gpu.py [dir, default dist/fusion-device]
"""

import ctypes
import json
import math
import os
import sys

import torch
import torch.nn.functional as F  # noqa: N812


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "dist/fusion-device"
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(r, what):
        if r != 0:
            raise RuntimeError(f"{what}: CUresult {r}")

    def load(ptx, name):
        text = open(os.path.join(folder, ptx), "rb").read() + b"\0"
        mod = ctypes.c_void_p()
        check(cuda.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(text)), f"load {ptx}")
        fn = ctypes.c_void_p()
        check(cuda.cuModuleGetFunction(ctypes.byref(fn), mod, name.encode()), f"function {name}")
        return fn

    def launcher(spec, values):
        fn = load(spec["ptx"], spec["name"])
        keep = []
        for p in spec["params"]:
            v = values[p]
            if isinstance(v, torch.Tensor):
                keep.append(ctypes.c_uint64(v.data_ptr()))
            elif isinstance(v, float):
                keep.append(ctypes.c_float(v))
            else:
                keep.append(ctypes.c_int32(v))
        params = (ctypes.c_void_p * len(keep))(*[ctypes.cast(ctypes.pointer(x), ctypes.c_void_p) for x in keep])
        gx, gy, gz = spec["grid"]
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

        def run():
            check(cuda.cuLaunchKernel(fn, gx, gy, gz, spec["block"], 1, 1, 0, stream, params, None), spec["name"])

        return run, keep

    def timed(fn, reps=20):
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps * 1e-3

    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for c in manifest:
        s = c["scalars"]
        B, H, W, C, heads, M = s["batch"], s["height"], s["width"], s["channels"], s["heads"], c["window"]
        d = C // heads
        bf = dict(device="cuda", dtype=torch.bfloat16)
        qkv = torch.randn(B, H, W, 3 * C, generator=gen, device="cuda").to(torch.bfloat16)
        table = torch.randn((2 * M - 1) ** 2, heads, generator=gen, device="cuda").to(torch.bfloat16)
        scale = (8 + 2 * torch.rand(heads, generator=gen, device="cuda")).to(torch.bfloat16)
        pad = (0.5 * torch.randn(3 * C, generator=gen, device="cuda")).to(torch.bfloat16)
        dout = torch.randn(B, H, W, C, generator=gen, device="cuda").to(torch.bfloat16)
        out = torch.zeros(B, H, W, C, **bf)
        dqkv = torch.zeros(B, H, W, 3 * C, **bf)
        windows = math.ceil(H / M) * math.ceil(W / M) * B
        stats = torch.zeros(windows * heads * 2 * (math.ceil(M * M / 16) * 16), device="cuda")
        values = dict(qkv=qkv, table=table, scale=scale, padValue=pad, out=out, dout=dout, dqkv=dqkv, stats=stats, **s)
        values["qScale"] = float(values["qScale"])
        values["normEps"] = float(values["normEps"])
        values["maskValue"] = float(values["maskValue"])
        fwd, _k1 = launcher(c["kernels"]["forward"], values)
        bq, _k2 = launcher(c["kernels"]["backwardQ"], values)
        bkv, _k3 = launcher(c["kernels"]["backwardKV"], values)

        def reference(x, dtype):
            return window_attention(x.to(dtype), table.to(dtype), scale.to(dtype), pad.to(dtype), c, heads, d)

        x = qkv.float().requires_grad_(True)
        ref = reference(x, torch.float32)
        ref.backward(dout.float())
        fwd()
        torch.cuda.synchronize()
        err = (out.float() - ref.detach()).abs().max().item() / ref.detach().abs().max().item()
        bq()
        bkv()
        torch.cuda.synchronize()
        g = x.grad
        gerr = [((dqkv.float()[..., i * C : (i + 1) * C] - g[..., i * C : (i + 1) * C]).abs().max() / g[..., i * C : (i + 1) * C].abs().max()).item() for i in range(3)]
        t_kernel = timed(fwd)
        t_eager = timed(lambda: reference(qkv, torch.bfloat16))
        t_bwd = timed(lambda: (bq(), bkv()))
        xb = qkv.detach().clone().requires_grad_(True)
        yb = reference(xb, torch.bfloat16)
        t_eager_bwd = timed(lambda: torch.autograd.grad(yb, xb, dout, retain_graph=True))
        bytes_fwd = (qkv.numel() + out.numel()) * 2
        peak = 4.8e12 if "H200" in torch.cuda.get_device_name() else 3.35e12
        print(f"{c['name']}: forward max|err|/max|ref| {err:.2e}; dq/dk/dv {gerr[0]:.2e}/{gerr[1]:.2e}/{gerr[2]:.2e}")
        print(
            f"  forward: kernel {t_kernel * 1e6:.1f} us ({bytes_fwd / t_kernel / 1e9:.0f} GB/s, {bytes_fwd / t_kernel / peak:.2f} of peak) "
            f"vs PyTorch eager bf16 {t_eager * 1e6:.1f} us ({t_eager / t_kernel:.2f}x); "
            f"backward (dq,dk,dv): kernels {t_bwd * 1e6:.1f} us vs eager autograd {t_eager_bwd * 1e6:.1f} us ({t_eager_bwd / t_bwd:.2f}x)"
        )


def relative_index(M, device):
    coords = torch.stack(torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (M - 1)
    return (rel[..., 0] * (2 * M - 1) + rel[..., 1]).flatten().to(device)


def region_mask(Hp, Wp, M, shift, device):
    labels = torch.zeros(Hp, Wp, device=device)
    n = 0
    for hs in ((0, -M), (-M, -shift[0]), (-shift[0], None)):
        for ws in ((0, -M), (-M, -shift[1]), (-shift[1], None)):
            labels[slice(*hs), slice(*ws)] = n
            n += 1
    w = labels.view(Hp // M, M, Wp // M, M).permute(0, 2, 1, 3).reshape(-1, M * M)
    diff = w[:, :, None] - w[:, None, :]
    return torch.where(diff != 0, -100.0, 0.0)


def window_attention(qkv, table, scale, pad, c, heads, d):
    B, H, W, C3 = qkv.shape
    M = c["window"]
    sy, sx = c["shift"]
    Hp, Wp = math.ceil(H / M) * M, math.ceil(W / M) * M
    x = pad.expand(B, Hp, Wp, C3).clone() if c["padInput"] else torch.zeros(B, Hp, Wp, C3, device=qkv.device, dtype=qkv.dtype)
    x = x.to(qkv.dtype)
    x[:, :H, :W] = qkv
    if sy or sx:
        x = torch.roll(x, (-sy, -sx), (1, 2))
    N = M * M
    win = x.view(B, Hp // M, M, Wp // M, M, C3).permute(0, 1, 3, 2, 4, 5).reshape(-1, N, C3)
    q, k, v = win.reshape(-1, N, 3, heads, d).permute(2, 0, 3, 1, 4)
    if c["cosine"]:
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * scale.view(heads, 1, 1)
    else:
        attn = (q * d**-0.5) @ k.transpose(-2, -1)
    bias = table[relative_index(M, qkv.device)].view(N, N, heads).permute(2, 0, 1)
    attn = attn + bias
    if sy or sx:
        nW = (Hp // M) * (Wp // M)
        attn = (attn.view(B, nW, heads, N, N) + region_mask(Hp, Wp, M, (sy, sx), qkv.device).to(attn.dtype)[None, :, None]).view(-1, heads, N, N)
    o = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, N, heads * d)
    o = o.view(B, Hp // M, Wp // M, M, M, heads * d).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, heads * d)
    if sy or sx:
        o = torch.roll(o, (sy, sx), (1, 2))
    return o[:, :H, :W]


if __name__ == "__main__":
    main()
