"""Gradient goldens for compiler/autodiff, computed by PyTorch autograd in float64 on the CPU from
float32-representable inputs (so the only differences left are our executor's f32 storage). Run
from the repository root:

    .venv-torch/bin/python test/golden/autodiff/gen_grads.py

Writes test/golden/autodiff/<case>.safetensors, each with the inputs (`input.<name>`), the parameters
(`param.<name>`, torch state-dict names), the loss, and torch's gradients (`grad.<param>`,
`gradInput.<name>`), read by test/autodiff/golden.test.ts:

- mlp_ce: a pre-norm MLP block + linear head + cross-entropy (one target ignored, ignore_index -100).
- attention: LayerNorm, qkv linear, reshape/permute to heads, scaled q @ k^T plus a relative-position
  bias gathered from a table by an index, softmax, @ v, merge heads, projection; the loss is
  sum(out * R) for a fixed random R (`input.R`).
- adamw: torch.optim.AdamW on two parameters (one decayed, one not) for 3 steps with fixed gradients,
  without clipping and with clip_grad_norm_ (max_norm 0.5) before each step.
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)


def f32(t):
    """Round to float32 values, keep float64 for the computation."""
    return t.to(torch.float32).to(torch.float64)


def store(tensors):
    return {k: (v.detach().to(torch.int32) if v.dtype in (torch.int64, torch.int32) else v.detach().to(torch.float32)).contiguous() for k, v in tensors.items()}


def leaf(t):
    return f32(t).requires_grad_(True)


def mlp_ce():
    g = torch.Generator().manual_seed(1)
    n, d, hidden, classes = 6, 10, 16, 5
    x = leaf(torch.randn(n, d, generator=g))
    p = {
        "norm.weight": leaf(1 + 0.1 * torch.randn(d, generator=g)),
        "norm.bias": leaf(0.1 * torch.randn(d, generator=g)),
        "fc1.weight": leaf(torch.randn(hidden, d, generator=g) / math.sqrt(d)),
        "fc1.bias": leaf(0.1 * torch.randn(hidden, generator=g)),
        "fc2.weight": leaf(torch.randn(d, hidden, generator=g) / math.sqrt(hidden)),
        "fc2.bias": leaf(0.1 * torch.randn(d, generator=g)),
        "head.weight": leaf(torch.randn(classes, d, generator=g) / math.sqrt(d)),
        "head.bias": leaf(0.1 * torch.randn(classes, generator=g)),
    }
    target = torch.tensor([0, 3, -100, 4, 1, 3])
    h = F.layer_norm(x, (d,), p["norm.weight"], p["norm.bias"], 1e-5)
    h = x + F.linear(F.gelu(F.linear(h, p["fc1.weight"], p["fc1.bias"])), p["fc2.weight"], p["fc2.bias"])
    logits = F.linear(h, p["head.weight"], p["head.bias"])
    loss = F.cross_entropy(logits, target, ignore_index=-100)
    loss.backward()
    t = {"input.x": x, "input.target": target, "loss": loss.reshape([])}
    t.update({f"param.{k}": v for k, v in p.items()})
    t.update({f"grad.{k}": v.grad for k, v in p.items()})
    t["gradInput.x"] = x.grad
    save_file(store(t), os.path.join(OUT, "mlp_ce.safetensors"))


def relative_position_index(wh, ww):
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1)


def attention():
    g = torch.Generator().manual_seed(2)
    b, wh, ww, c, heads = 2, 2, 3, 8, 2
    n = wh * ww
    hd = c // heads
    x = leaf(torch.randn(b, n, c, generator=g))
    p = {
        "norm.weight": leaf(1 + 0.1 * torch.randn(c, generator=g)),
        "norm.bias": leaf(0.1 * torch.randn(c, generator=g)),
        "qkv.weight": leaf(torch.randn(3 * c, c, generator=g) / math.sqrt(c)),
        "qkv.bias": leaf(0.1 * torch.randn(3 * c, generator=g)),
        "proj.weight": leaf(torch.randn(c, c, generator=g) / math.sqrt(c)),
        "proj.bias": leaf(0.1 * torch.randn(c, generator=g)),
        "relative_position_bias_table": leaf(0.5 * torch.randn((2 * wh - 1) * (2 * ww - 1), heads, generator=g)),
    }
    index = relative_position_index(wh, ww)
    r = f32(torch.randn(b, n, c, generator=g))
    h = F.layer_norm(x, (c,), p["norm.weight"], p["norm.bias"], 1e-5)
    qkv = F.linear(h, p["qkv.weight"], p["qkv.bias"]).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * hd**-0.5) @ k.transpose(-2, -1)
    bias = p["relative_position_bias_table"][index.reshape(-1)].reshape(n, n, heads).permute(2, 0, 1)
    attn = F.softmax(attn + bias.unsqueeze(0), dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, n, c)
    out = F.linear(out, p["proj.weight"], p["proj.bias"])
    loss = (out * r).sum()
    loss.backward()
    t = {"input.x": x, "input.R": r, "input.index": index, "loss": loss.reshape([])}
    t.update({f"param.{k}": v for k, v in p.items()})
    t.update({f"grad.{k}": v.grad for k, v in p.items()})
    t["gradInput.x"] = x.grad
    save_file(store(t), os.path.join(OUT, "attention.safetensors"))


def adamw():
    """torch.optim.AdamW in float32 (its production dtype), two param groups."""
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(4, 3, generator=g)
    b0 = torch.randn(3, generator=g)
    grads = [(torch.randn(4, 3, generator=g) * s, torch.randn(3, generator=g) * s) for s in (1.0, 2.0, 0.01)]
    t = {"init.w": w0, "init.b": b0}
    for i, (gw, gb) in enumerate(grads):
        t[f"grad{i + 1}.w"] = gw
        t[f"grad{i + 1}.b"] = gb
    for mode, max_norm in (("noclip", None), ("clip", 0.5)):
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        opt = torch.optim.AdamW(
            [{"params": [w], "weight_decay": 0.05}, {"params": [b], "weight_decay": 0.0}], lr=0.01, betas=(0.9, 0.999), eps=1e-8
        )
        for i, (gw, gb) in enumerate(grads):
            w.grad = gw.clone()
            b.grad = gb.clone()
            norm = torch.nn.utils.clip_grad_norm_([w, b], max_norm) if max_norm else torch.linalg.vector_norm(torch.cat([gw.flatten(), gb]))
            opt.step()
            s = f"{mode}.step{i + 1}"
            t[f"{s}.gradNorm"] = norm.reshape([]).detach()
            t[f"{s}.w"] = w.detach().clone()
            t[f"{s}.b"] = b.detach().clone()
            t[f"{s}.m.w"] = opt.state[w]["exp_avg"].clone()
            t[f"{s}.v.w"] = opt.state[w]["exp_avg_sq"].clone()
            t[f"{s}.m.b"] = opt.state[b]["exp_avg"].clone()
            t[f"{s}.v.b"] = opt.state[b]["exp_avg_sq"].clone()
    save_file(store(t), os.path.join(OUT, "adamw.safetensors"))


if __name__ == "__main__":
    mlp_ce()
    attention()
    adamw()
