"""PerceptNet (SimMIM pre-training) written in plain PyTorch from a model config, to time one training
step against ptc on the same GPU: the baseline of bench/device/run.sh.

The maths follows model/perceptnet/*.ts (Swin V2 blocks: res-post-norm, scaled cosine attention,
continuous position bias; patch merging V2; the cross-attention FPN decoder; the SimMIM head and
masked L1 loss), so the parameter count must equal `ptc build`'s (checked when the config file
carries "expectParams"). Mixed precision as ptc's --precision bf16: f32 master weights, bf16
compute (autocast), AdamW on the f32 weights.

Usage:
  python3 bench/device/perceptnet_torch.py CONFIG.json [--batch B] [--image H] [--steps N] [--warmup W]
      [--mode eager|compile] [--compile-backend inductor|eager] [--device cuda|cpu] [--out FILE.json]
CONFIG.json: a config object of model/perceptnet/configs.ts (bench/device/prepare.sh writes them).
"""

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="config JSON (from bench/device/prepare.sh)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--image", type=int, default=0, help="square image side (default: the config's)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--compile-backend", default="inductor")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.batch < 1 or a.steps < 1 or a.warmup < 0:
        p.error("--batch and --steps must be >= 1, --warmup >= 0")
    return a


# ---- window geometry (model/perceptnet/windows.ts) ----------------------------------------------


def padded(size, window):
    return size + (window - size % window) % window


def effective_shift(ph, pw, window, shift):
    return (0 if window >= ph else shift, 0 if window >= pw else shift)


def relative_index(window):
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1)  # [N, 2]
    d = pos[:, None, :] - pos[None, :, :] + window - 1
    return d[..., 0] * (2 * window - 1) + d[..., 1]  # [N, N]


def cpb_coords(window):
    r = torch.arange(-(window - 1), window, dtype=torch.float32)
    t = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)  # (dy, dx) row-major
    t = t / (window - 1) * 8
    return torch.sign(t) * torch.log2(t.abs() + 1) / 3


def shift_mask(ph, pw, window, shift, device):
    # Built on the model's device: under torch.compile a CPU tensor here makes Inductor generate and
    # compile C++ for it (which failed on the lent GPU machine's toolchain).
    labels = torch.zeros(ph, pw, device=device)
    count = 0
    # Python's slices are the model's (windows.ts pySlice): with s = 0 the last one is the whole side.
    for hs in (slice(0, -window), slice(-window, -shift[0]), slice(-shift[0], None)):
        for ws in (slice(0, -window), slice(-window, -shift[1]), slice(-shift[1], None)):
            labels[hs, ws] = count
            count += 1
    win = labels.reshape(ph // window, window, pw // window, window).permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = win[:, :, None] != win[:, None, :]
    return torch.where(diff, -100.0, 0.0)  # [nW, N, N]


def partition(x, window):
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def reverse(t, window, b, h, w):
    c = t.shape[-1]
    x = t.reshape(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


# ---- modules -------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, dim, hidden, out=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class WindowAttentionV2(nn.Module):
    def __init__(self, dim, heads, window, shift):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb_fc1 = nn.Linear(2, 512)
        self.cpb_fc2 = nn.Linear(512, heads, bias=False)
        self.register_buffer("coords", cpb_coords(window), persistent=False)
        self.register_buffer("index", relative_index(window).flatten(), persistent=False)
        self.masks = {}

    def forward(self, x):
        b, h, w, c = x.shape
        m = self.window
        ph, pw = padded(h, m), padded(w, m)
        x = F.pad(x, (0, 0, 0, pw - w, 0, ph - h))
        s = effective_shift(ph, pw, m, self.shift)
        if s[0] + s[1] > 0:
            x = torch.roll(x, (-s[0], -s[1]), (1, 2))
        t = partition(x, m)
        bw, n, _ = t.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(t, self.qkv.weight, bias).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scale = torch.clamp(self.logit_scale, max=math.log(1 / 0.01)).exp()
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * scale
        table = self.cpb_fc2(F.relu(self.cpb_fc1(self.coords)))  # [(2M-1)^2, heads]
        pos = table[self.index].reshape(n, n, self.heads).permute(2, 0, 1)
        attn = attn + 16 * torch.sigmoid(pos)
        if s[0] + s[1] > 0:
            key = (ph, pw, s)
            if key not in self.masks:
                self.masks[key] = shift_mask(ph, pw, m, s, x.device)
            mask = self.masks[key]
            nw = mask.shape[0]
            attn = (attn.reshape(bw // nw, nw, self.heads, n, n) + mask[None, :, None].to(attn.dtype)).reshape(bw, self.heads, n, n)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        x = reverse(self.proj(out), m, b, ph, pw)
        if s[0] + s[1] > 0:
            x = torch.roll(x, (s[0], s[1]), (1, 2))
        return x[:, :h, :w, :]


def drop_path(x, p, training):
    if p == 0 or not training:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= p
    return x * keep.to(x.dtype) / (1 - p)


class SwinBlockV2(nn.Module):
    def __init__(self, dim, heads, window, shift, mlp_ratio, drop):
        super().__init__()
        self.attn = WindowAttentionV2(dim, heads, window, shift)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = drop

    def forward(self, x):
        x = x + drop_path(self.norm1(self.attn(x)), self.drop, self.training)
        return x + drop_path(self.norm2(self.mlp(x)), self.drop, self.training)


class PatchMergingV2(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x):
        _, h, w, _ = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.norm(self.reduction(x))


class Stage(nn.Module):
    def __init__(self, dim, depth, heads, window, mlp_ratio, drops, extra_every):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlockV2(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drops[i]) for i in range(depth)
        )
        self.extra_every = extra_every
        self.extra = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth // extra_every if extra_every else 0))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if self.extra_every and (i + 1) % self.extra_every == 0:
                x = self.extra[(i + 1) // self.extra_every - 1](x)
        return x


class CrossAttentionBlock(nn.Module):
    def __init__(self, dim, heads, ffn_ratio):
        super().__init__()
        self.heads = heads
        self.norm_q, self.norm_ctx, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.gate_attn = nn.Parameter(torch.zeros(dim))
        self.ffn = MLP(dim, dim * ffn_ratio)
        self.gate_ffn = nn.Parameter(torch.zeros(dim))

    def split(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, tokens, context):
        q = self.split(self.q(self.norm_q(tokens)))
        ctx = self.norm_ctx(context)
        k, v = self.split(self.k(ctx)), self.split(self.v(ctx))
        attn = (q * q.shape[-1] ** -0.5 @ k.transpose(-2, -1)).softmax(-1)
        out = (attn @ v).transpose(1, 2).reshape(tokens.shape)
        tokens = tokens + self.proj(out) * self.gate_attn
        return tokens + self.ffn(self.norm_ffn(tokens)) * self.gate_ffn


class Decoder(nn.Module):
    def __init__(self, channels, d):
        super().__init__()
        dim, groups = d["dim"], d["groups"]
        self.lateral = nn.ModuleList(nn.Sequential(nn.Conv2d(c, dim, 1), nn.GroupNorm(groups, dim)) for c in channels)
        self.cross = nn.ModuleList(CrossAttentionBlock(dim, d["heads"], d["ffnRatio"]) for _ in channels[:-1])
        self.output = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in channels)
        self.fuse = nn.Conv2d(len(channels) * dim, dim, 3, padding=1)
        self.fuse_norm = nn.GroupNorm(groups, dim)

    def forward(self, features):
        lateral = [m(f.permute(0, 3, 1, 2)) for m, f in zip(self.lateral, features, strict=True)]
        top = len(lateral) - 1
        pyramid = [None] * len(lateral)
        pyramid[top] = lateral[top]
        context = lateral[top].flatten(2).transpose(1, 2)
        for i in range(top - 1, -1, -1):
            b, c, h, w = lateral[i].shape
            merged = lateral[i] + F.interpolate(pyramid[i + 1], size=(h, w), mode="nearest")
            t = self.cross[i](merged.flatten(2).transpose(1, 2), context)
            pyramid[i] = t.transpose(1, 2).reshape(b, c, h, w)
        h4, w4 = pyramid[0].shape[2:]
        levels = [
            y if i == 0 else F.interpolate(y, size=(h4, w4), mode="bilinear", align_corners=False)
            for i, y in enumerate(conv(p) for conv, p in zip(self.output, pyramid, strict=True))
        ]
        return F.gelu(self.fuse_norm(self.fuse(torch.cat(levels, 1))))


class PerceptNetSimMIM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg["blocks"] != "v2":
            raise SystemExit("perceptnet_torch.py writes the Swin V2 configs only")
        p, c = cfg["patchSize"], cfg["embedDim"]
        self.cfg = cfg
        self.patch = nn.Conv2d(3, c, p, stride=p)
        self.patch_norm = nn.LayerNorm(c)
        self.mask_token = nn.Parameter(torch.zeros(c).normal_(0, 0.02))
        depths = cfg["depths"]
        total = sum(depths)
        rates = [cfg["dropPath"] * k / (total - 1) if total > 1 else 0.0 for k in range(total)]
        extra = cfg.get("extraNorm") or {}
        self.stages, self.merges = nn.ModuleList(), nn.ModuleList()
        k = 0
        for s, depth in enumerate(depths):
            dim = c * 2**s
            every = extra.get("every", 0) if extra.get("stage") == s else 0
            self.stages.append(Stage(dim, depth, cfg["heads"][s], cfg["window"], cfg["mlpRatio"], rates[k : k + depth], every))
            k += depth
            if s < len(depths) - 1:
                self.merges.append(PatchMergingV2(dim))
        dec = cfg["decoder"]
        self.decoder = Decoder([c * 2**s for s in range(len(depths))], dec)
        self.head = nn.Conv2d(dec["dim"], 3 * p * p, 1)

    def forward(self, image, mask):
        cfg = self.cfg
        p, mp = cfg["patchSize"], cfg["simmim"]["maskPatch"]
        x = self.patch_norm(self.patch(image).permute(0, 2, 3, 1))
        m = mask.repeat_interleave(mp // p, 1).repeat_interleave(mp // p, 2).unsqueeze(-1).to(x.dtype)
        x = x * (1 - m) + m * self.mask_token.to(x.dtype)
        features = []
        for s, stage in enumerate(self.stages):
            x = stage(x)
            features.append(stage.norm(x))
            if s < len(self.merges):
                x = self.merges[s](x)
        pred = F.pixel_shuffle(self.head(self.decoder(features)), p)
        pm = mask.repeat_interleave(mp, 1).repeat_interleave(mp, 2).unsqueeze(1).to(pred.dtype)
        loss = ((pred.float() - image.float()).abs() * pm).sum() / (pm.sum() + 1e-5) / image.shape[1]
        return loss


def random_masks(batch, rows, cols, ratio, gen, device):
    count = int(math.ceil(rows * cols * ratio))
    scores = torch.rand(batch, rows * cols, generator=gen, device=device)
    idx = scores.argsort(1)[:, :count]
    m = torch.zeros(batch, rows * cols, device=device)
    m.scatter_(1, idx, 1.0)
    return m.reshape(batch, rows, cols)


def main(argv):
    a = parse_args(argv)
    cfg = json.load(open(a.config))
    device = torch.device(a.device)
    side = a.image or cfg["imageSize"][0]
    torch.manual_seed(a.seed)
    model = PerceptNetSimMIM(cfg).to(device)
    params = sum(p.numel() for p in model.parameters())
    expect = cfg.get("expectParams")
    result = {
        "mode": a.mode,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "batch": a.batch,
        "image": side,
        "params": params,
        "expectParams": expect,
    }
    print(f"perceptnet_torch: {params} parameters (ptc: {expect}), batch {a.batch}, {side}x{side}, {a.mode}", flush=True)
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, **fused)
    mp = cfg["simmim"]["maskPatch"]
    gen = torch.Generator(device=device).manual_seed(a.seed)
    image = torch.randn(a.batch, 3, side, side, generator=gen, device=device)
    mask = random_masks(a.batch, side // mp, side // mp, cfg["simmim"]["maskRatio"], gen, device)

    def step(x, m):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(x, m)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    run = step
    if a.mode == "compile":
        fwd = torch.compile(model, backend=a.compile_backend)

        def run(x, m):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = fwd(x, m)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    first = run(image, mask)
    sync()
    result["firstStepSeconds"] = time.perf_counter() - t0  # includes compilation in compile mode
    result["firstLoss"] = float(first.detach())
    for _ in range(a.warmup):
        run(image, mask)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = run(image, mask)
    sync()
    dt = (time.perf_counter() - t0) / a.steps
    result.update(stepMs=dt * 1e3, imagesPerSecond=a.batch / dt, lastLoss=float(loss.detach()))
    if device.type == "cuda":
        result["peakMemoryBytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(result), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    if expect is not None and expect != params:
        print(f"perceptnet_torch: parameter count {params} != ptc's {expect}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
