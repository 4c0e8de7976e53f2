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
- swin_v1 / swin_v2: torchvision's SwinTransformerBlock / SwinTransformerBlockV2 (dim 16, 2 heads,
  window 4, shift 2) on a [2, 6, 6, 16] map (padded to 8x8 inside), weights randomised to O(0.1-1)
  so every parameter's gradient is well above rounding; parameters under torchvision's names; loss
  sum(out * R).
- simmim: the SimMIM objective: mask-token replacement on [B, H, W, C] tokens, a 1x1 conv + pixel
  shuffle reconstruction head, per-patch normalised targets (MAE: unbiased variance + 1e-6) and the
  L1 loss on masked pixels (sum / (masked pixels + 1e-5) / channels). Gradients of the parameters
  and of the image (through the normalised target); the tokens' gradient is exactly zero (masked
  tokens are replaced, and a 1x1 head maps unmasked tokens only to unscored pixels).
- adamw: torch.optim.AdamW on two parameters (one decayed, one not) for 3 steps with fixed gradients,
  without clipping and with clip_grad_norm_ (max_norm 0.5) before each step.
"""

import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.swin_transformer import SwinTransformerBlock, SwinTransformerBlockV2

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


def swin_block(version):
    torch.manual_seed(4 if version == 1 else 5)  # torchvision's own init draws from the global generator
    g = torch.Generator().manual_seed(40 + version)
    cls = SwinTransformerBlock if version == 1 else SwinTransformerBlockV2
    block = cls(16, 2, [4, 4], [2, 2], mlp_ratio=2.0).double()
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("logit_scale"):
                p.copy_(math.log(10) + 0.3 * torch.randn(p.shape, generator=g))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 4
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            p.copy_(f32(p))
    x = leaf(torch.randn(2, 6, 6, 16, generator=g))
    r = f32(torch.randn(2, 6, 6, 16, generator=g))
    loss = (block(x) * r).sum()
    loss.backward()
    t = {"input.x": x, "input.R": r, "loss": loss.reshape([])}
    for name, p in block.named_parameters():
        t[f"param.{name}"] = p
        t[f"grad.{name}"] = p.grad
    t["gradInput.x"] = x.grad
    save_file(store(t), os.path.join(OUT, f"swin_v{version}.safetensors"))


def simmim():
    g = torch.Generator().manual_seed(6)
    b, h, w, c, stride, mask_patch = 2, 4, 4, 8, 4, 8  # 16x16 images, mask patches of 2x2 tokens
    tokens = leaf(torch.randn(b, h, w, c, generator=g))
    mask_token = leaf(0.5 * torch.randn(c, generator=g))
    weight = leaf(torch.randn(3 * stride * stride, c, 1, 1, generator=g) / math.sqrt(c))
    bias = leaf(0.1 * torch.randn(3 * stride * stride, generator=g))
    image = leaf(torch.rand(b, 3, h * stride, w * stride, generator=g))
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)  # [B, 2, 2]
    m = mask.repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(-1)  # token resolution
    x = tokens * (1 - m) + mask_token * m
    pred = F.pixel_shuffle(F.conv2d(x.permute(0, 3, 1, 2), weight, bias), stride)
    # per-patch (stride x stride) normalised target, unbiased variance (MAE / SimMIM norm_target)
    p = stride
    patches = image.reshape(b, 3, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h, w, 3 * p * p)
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True, unbiased=True)
    target = ((patches - mean) / (var + 1e-6) ** 0.5).reshape(b, h, w, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, h * p, w * p)
    pixel_mask = mask.repeat_interleave(mask_patch, 1).repeat_interleave(mask_patch, 2).unsqueeze(1)
    loss = ((pred - target).abs() * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / 3
    loss.backward()
    t = {
        "input.tokens": tokens,
        "input.image": image,
        "input.mask": mask,
        "param.maskToken": mask_token,
        "param.head.proj.weight": weight,
        "param.head.proj.bias": bias,
        "grad.maskToken": mask_token.grad,
        "grad.head.proj.weight": weight.grad,
        "grad.head.proj.bias": bias.grad,
        "gradInput.tokens": tokens.grad,
        "gradInput.image": image.grad,
        "loss": loss.reshape([]),
    }
    save_file(store(t), os.path.join(OUT, "simmim.safetensors"))


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
    swin_block(1)
    swin_block(2)
    simmim()
    adamw()
