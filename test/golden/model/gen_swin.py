"""Golden fixtures for model/perceptnet: torchvision's Swin (V1 and V2 blocks, patch merging, whole
small SwinTransformers) and a PyTorch re-implementation of PerceptNet's decoder, SimMIM loss and
segmentation head, all in float32 on the CPU. Run from the repository root:

    .venv-torch/bin/python test/golden/model/gen_swin.py

For each case <name> it writes, next to this script:
  <name>.weights.safetensors   the module's state_dict (torchvision's names and buffers, unchanged),
                               or, for the PerceptNet cases, the parameters under ptc's names
  <name>.inputs.safetensors    the inputs, under the model's input names
  <name>.expected.safetensors  torch's outputs, under the model's output names
and manifest.json describing each case (what the test builds). Every parameter is drawn at random
(not left at its initial value: zero biases, zero gates or the constant logit scale would hide
mistakes), from a generator seeded by the case name, so the files are reproducible.
"""

import json
import math
import os
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torchvision.models.swin_transformer import (
    PatchMerging,
    PatchMergingV2,
    SwinTransformer,
    SwinTransformerBlock,
    SwinTransformerBlockV2,
)

OUT = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)
manifest = {}


def gen(tag):
    return torch.Generator().manual_seed(zlib.crc32(tag.encode()))


def randomize(module, tag):
    """Random values for every parameter: norms near 1 / 0, matrices ~ 1/sqrt(fan_in), the rest ~ 0.2."""
    g = gen(tag)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("logit_scale"):
                # around log(10); head 0 above log(100) to exercise the clamp
                p.copy_(math.log(10) + 0.5 * r)
                p.view(-1)[0] = 5.0
            elif ("norm" in name or "Norm" in name) and p.dim() == 1:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * r)
            elif p.dim() >= 2:
                p.copy_(r / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.2 * r)


def contiguous(tensors):
    return {k: v.detach().contiguous().clone() for k, v in tensors.items()}


def write(name, info, expected, weights=None, inputs=None, weights_file=None, inputs_file=None):
    """Writes a case's files; a case may reuse another's weights / inputs file (by file name)."""
    files = {
        "weights": weights_file or f"{name}.weights.safetensors",
        "inputs": inputs_file or f"{name}.inputs.safetensors",
        "expected": f"{name}.expected.safetensors",
    }
    for kind, tensors in (("weights", weights), ("inputs", inputs), ("expected", expected)):
        if tensors is not None:
            save_file(contiguous(tensors), os.path.join(OUT, files[kind]))
    manifest[name] = {**info, "files": files}


# ------------------------------------------------------------------ torchvision blocks and merging


def blocks():
    # 10x10 needs padding to 12 (window 4); 3x10 also fits H in one window (shift 0 on H only).
    cases = [
        ("block_v1", SwinTransformerBlock, [2, 10, 10, 16], 0),
        ("block_v1_shift", SwinTransformerBlock, [2, 10, 10, 16], 2),
        ("block_v2", SwinTransformerBlockV2, [2, 10, 10, 16], 0),
        ("block_v2_shift", SwinTransformerBlockV2, [2, 10, 10, 16], 2),
        ("block_v1_shift_thin", SwinTransformerBlock, [1, 3, 10, 16], 2),
        ("block_v2_shift_thin", SwinTransformerBlockV2, [1, 3, 10, 16], 2),
    ]
    for name, cls, shape, shift in cases:
        block = cls(16, 2, window_size=[4, 4], shift_size=[shift, shift], mlp_ratio=2.0).eval()
        randomize(block, name)
        x = torch.randn(shape, generator=gen(name + ".x"))
        with torch.no_grad():
            y = block(x)
        info = {"kind": "block", "version": "v2" if cls is SwinTransformerBlockV2 else "v1", "dim": 16, "heads": 2}
        info = {**info, "window": 4, "shift": shift, "mlpRatio": 2}
        write(name, info, {"y": y}, weights=block.state_dict(), inputs={"x": x})


def merges():
    for name, cls in [("merge_v1", PatchMerging), ("merge_v2", PatchMergingV2)]:
        merge = cls(8).eval()
        randomize(merge, name)
        x = torch.randn([2, 5, 7, 8], generator=gen(name + ".x"))  # odd sides: padded
        with torch.no_grad():
            y = merge(x)
        info = {"kind": "merge", "version": name[-2:], "dim": 8}
        write(name, info, {"y": y}, weights=merge.state_dict(), inputs={"x": x})


# ------------------------------------------------------------------ whole torchvision SwinTransformers

TINY = dict(patch_size=[4, 4], embed_dim=6, depths=[2, 2, 2, 1], num_heads=[1, 2, 2, 4], window_size=[4, 4])


def swin_models():
    for name, extra in [
        ("swin_v1", {}),
        ("swin_v2", {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2}),
    ]:
        model = SwinTransformer(**TINY, num_classes=10, stochastic_depth_prob=0.0, **extra).eval()
        randomize(model, name)
        # 56 px: stride-4 map 14x14 (padded to 16, shifted), 7x7 (padded to 8), 4x4 (one window, no
        # shift), 2x2 (padded up to one window)
        image = torch.randn([2, 3, 56, 56], generator=gen(name + ".image"))
        with torch.no_grad():
            logits = model(image)
        info = {"kind": "swin", "blocks": name[-2:], "embedDim": TINY["embed_dim"], "depths": TINY["depths"], "heads": TINY["num_heads"]}
        info = {**info, "window": 4, "classes": 10}
        write(name, info, {"logits": logits}, weights=model.state_dict(), inputs={"image": image})


# ------------------------------------------------------------------ PerceptNet decoder and heads (re-implemented)


class CrossBlock(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.ln_q, self.ln_kv, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.proj = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, ffn * d), nn.Linear(ffn * d, d)
        self.gate_attn, self.gate_ffn = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))

    def attend(self, x, ctx):
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, -1, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(ctx)), split(self.v(ctx))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x, ctx):
        x = x + self.gate_attn * self.attend(self.ln_q(x), self.ln_kv(ctx))
        return x + self.gate_ffn * self.fc2(F.gelu(self.fc1(self.ln_ffn(x))))


class RefPerceptNet(nn.Module):
    """PerceptNet with V2 blocks, written from its description (encoder blocks are torchvision's)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        e, w = c["embedDim"], c["window"]
        self.embed = nn.Conv2d(3, e, 4, 4)
        self.embed_norm = nn.LayerNorm(e)
        self.mask_token = nn.Parameter(torch.zeros(e))
        dims = [e * 2**s for s in range(4)]
        self.stages = nn.ModuleList(
            nn.ModuleList(
                SwinTransformerBlockV2(dims[s], c["heads"][s], [w, w], [0, 0] if i % 2 == 0 else [w // 2, w // 2])
                for i in range(depth)
            )
            for s, depth in enumerate(c["depths"])
        )
        self.extra = nn.ModuleList(nn.LayerNorm(dims[2]) for _ in range(c["depths"][2] // c["extraEvery"]))
        self.stage_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)
        self.merges = nn.ModuleList(PatchMergingV2(d) for d in dims[:3])
        d, g = c["decoderDim"], c["groups"]
        self.lat = nn.ModuleList(nn.Conv2d(cin, d, 1) for cin in dims)
        self.lat_gn = nn.ModuleList(nn.GroupNorm(g, d) for _ in dims)
        self.cross = nn.ModuleList(CrossBlock(d, c["decoderHeads"], c["ffnRatio"]) for _ in range(3))
        self.out = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in dims)
        self.fuse = nn.Conv2d(4 * d, d, 3, padding=1)
        self.fuse_gn = nn.GroupNorm(g, d)
        self.recon = nn.Conv2d(d, 3 * 16, 1)
        self.seg = nn.Conv2d(d, c["segClasses"], 1)

    def features(self, tokens):
        feats, x = [], tokens
        for s, stage in enumerate(self.stages):
            for i, block in enumerate(stage):
                x = block(x)
                if s == 2 and (i + 1) % self.c["extraEvery"] == 0:
                    x = self.extra[(i + 1) // self.c["extraEvery"] - 1](x)
            feats.append(self.stage_norms[s](x))
            if s < 3:
                x = self.merges[s](x)
        return feats

    def decode(self, feats):
        lat = [gn(conv(f.permute(0, 3, 1, 2))) for f, conv, gn in zip(feats, self.lat, self.lat_gn)]
        pyr = [None] * 4
        pyr[3] = lat[3]
        ctx = lat[3].flatten(2).transpose(1, 2)
        for i in (2, 1, 0):
            m = lat[i] + F.interpolate(pyr[i + 1], size=lat[i].shape[-2:], mode="nearest")
            t = self.cross[i](m.flatten(2).transpose(1, 2), ctx)
            pyr[i] = t.transpose(1, 2).reshape(m.shape)
        size = pyr[0].shape[-2:]
        outs = [self.out[0](pyr[0])] + [
            F.interpolate(self.out[i](pyr[i]), size=size, mode="bilinear", align_corners=False) for i in (1, 2, 3)
        ]
        return F.gelu(self.fuse_gn(self.fuse(torch.cat(outs, 1))))

    def embed_image(self, image):
        h, w = image.shape[-2:]
        x = F.pad(image, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4))
        return self.embed_norm(self.embed(x).permute(0, 2, 3, 1))

    def pretrain_loss(self, image, mask, norm_patch=None):
        tokens = self.embed_image(image)
        m = mask.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(-1)
        tokens = tokens * (1 - m) + self.mask_token * m
        pred = F.pixel_shuffle(self.recon(self.decode(self.features(tokens))), 4)
        target = image if norm_patch is None else normalize_patches(image, norm_patch)
        px = mask.repeat_interleave(32, 1).repeat_interleave(32, 2).unsqueeze(1)
        return (F.l1_loss(pred, target, reduction="none") * px).sum() / (px.sum() + 1e-5) / 3, pred

    def segment(self, image):
        h, w = image.shape[-2:]
        logits = self.seg(self.decode(self.features(self.embed_image(image))))
        full = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        return full[:, :, :h, :w]


def normalize_patches(image, p):
    """MAE: each p x p x C patch to zero mean, unit (unbiased) variance."""
    b, c, h, w = image.shape
    t = image.view(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h // p, w // p, -1)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
    return t.view(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def ptc_names(ref):
    """The reference's state_dict under ptc's parameter names (written out independently of the TS map)."""
    out = {}
    block_names = {
        "attn.qkv.weight": "attn.qkv.weight",
        "attn.proj.weight": "attn.proj.weight",
        "attn.proj.bias": "attn.proj.bias",
        "attn.logit_scale": "attn.logitScale",
        "attn.cpb_mlp.0.weight": "attn.cpbMlp.fc1.weight",
        "attn.cpb_mlp.0.bias": "attn.cpbMlp.fc1.bias",
        "attn.cpb_mlp.2.weight": "attn.cpbMlp.fc2.weight",
        "norm1.weight": "norm1.weight",
        "norm1.bias": "norm1.bias",
        "norm2.weight": "norm2.weight",
        "norm2.bias": "norm2.bias",
        "mlp.0.weight": "mlp.fc1.weight",
        "mlp.0.bias": "mlp.fc1.bias",
        "mlp.3.weight": "mlp.fc2.weight",
        "mlp.3.bias": "mlp.fc2.bias",
    }
    for s, stage in enumerate(ref.stages):
        for i, block in enumerate(stage):
            p = f"stages.{s}.blocks.{i}."
            for k, v in block.state_dict().items():
                if k in block_names:
                    out[p + block_names[k]] = v
                elif k == "attn.qkv.bias":
                    c = v.shape[0] // 3
                    out[p + "attn.qBias"], out[p + "attn.vBias"] = v[:c], v[2 * c :]
        out[f"stages.{s}.norm.weight"], out[f"stages.{s}.norm.bias"] = ref.stage_norms[s].weight, ref.stage_norms[s].bias
    for k, n in enumerate(ref.extra):
        out[f"stages.2.extraNorms.{k}.weight"], out[f"stages.2.extraNorms.{k}.bias"] = n.weight, n.bias
    for s, m in enumerate(ref.merges):
        for k, v in m.state_dict().items():
            out[f"merges.{s}.{k}"] = v
    out["patchEmbed.proj.weight"], out["patchEmbed.proj.bias"] = ref.embed.weight, ref.embed.bias
    out["patchEmbed.norm.weight"], out["patchEmbed.norm.bias"] = ref.embed_norm.weight, ref.embed_norm.bias
    out["maskToken"] = ref.mask_token
    for i in range(4):
        out[f"decoder.lateral.{i}.conv.weight"], out[f"decoder.lateral.{i}.conv.bias"] = ref.lat[i].weight, ref.lat[i].bias
        out[f"decoder.lateral.{i}.norm.weight"], out[f"decoder.lateral.{i}.norm.bias"] = ref.lat_gn[i].weight, ref.lat_gn[i].bias
        out[f"decoder.output.{i}.weight"], out[f"decoder.output.{i}.bias"] = ref.out[i].weight, ref.out[i].bias
    cross = {
        "ln_q": "normQuery",
        "ln_kv": "normContext",
        "ln_ffn": "normFfn",
        "q": "attn.q",
        "k": "attn.k",
        "v": "attn.v",
        "proj": "attn.proj",
        "fc1": "ffn.fc1",
        "fc2": "ffn.fc2",
    }
    for i, blk in enumerate(ref.cross):
        for k, v in blk.state_dict().items():
            mod, leaf = k.rsplit(".", 1) if "." in k else (k, None)
            if leaf is None:
                out[f"decoder.cross.{i}.{'gateAttn' if k == 'gate_attn' else 'gateFfn'}"] = v
            else:
                out[f"decoder.cross.{i}.{cross[mod]}.{leaf}"] = v
    out["decoder.fuse.weight"], out["decoder.fuse.bias"] = ref.fuse.weight, ref.fuse.bias
    out["decoder.fuseNorm.weight"], out["decoder.fuseNorm.bias"] = ref.fuse_gn.weight, ref.fuse_gn.bias
    out["reconstruction.proj.weight"], out["reconstruction.proj.bias"] = ref.recon.weight, ref.recon.bias
    out["segHead.classifier.weight"], out["segHead.classifier.bias"] = ref.seg.weight, ref.seg.bias
    return out


PERCEPTNET = dict(
    embedDim=4, depths=[2, 2, 2, 1], heads=[1, 1, 2, 2], window=4, extraEvery=2, decoderDim=16, decoderHeads=2, groups=4
)


def perceptnet():
    c = {**PERCEPTNET, "ffnRatio": 2, "segClasses": 5}
    ref = RefPerceptNet(c).eval()
    randomize(ref, "perceptnet")
    # one weights file for both tasks: it holds both heads, so each test drops the other task's head
    weights = ptc_names(ref)
    # pre-training at 64 px (2x2 mask patches; the two samples mask different patches)
    # (a small image, so the loss depends on the reconstruction, not mostly on the target)
    image = 0.05 + 0.1 * torch.randn([2, 3, 64, 64], generator=gen("perceptnet.image"))
    mask = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    with torch.no_grad():
        loss, pred = ref.pretrain_loss(image, mask)
        loss_norm, _ = ref.pretrain_loss(image, mask, norm_patch=8)
    info = {"kind": "perceptnet", **c}
    pretrain = {**info, "task": "pretrain"}
    expected = {"loss": loss, "reconstruction": pred}
    write("perceptnet_pretrain", pretrain, expected, weights=weights, inputs={"image": image, "mask": mask})
    shared = {"weights_file": "perceptnet_pretrain.weights.safetensors", "inputs_file": "perceptnet_pretrain.inputs.safetensors"}
    write("perceptnet_pretrain_norm", {**pretrain, "normTargetPatch": 8}, {"loss": loss_norm}, **shared)
    # segmentation at 62x50: the image is padded to 64x52, stage maps 16x13 / 8x7 / 4x4 / 2x2
    image = torch.randn([1, 3, 62, 50], generator=gen("perceptnet.seg.image"))
    with torch.no_grad():
        seg = ref.segment(image)
    write("perceptnet_seg", {**info, "task": "seg"}, {"seg": seg}, inputs={"image": image}, weights_file=shared["weights_file"])

def to_json(v, indent=""):
    """JSON as the repository's formatter (Biome) writes it: 2-space indent, number lists on one line."""
    if isinstance(v, dict):
        inner = indent + "  "
        items = ",\n".join(f"{inner}{json.dumps(k)}: {to_json(x, inner)}" for k, x in v.items())
        return "{\n" + items + "\n" + indent + "}"
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    return json.dumps(v)


if __name__ == "__main__":
    blocks()
    merges()
    swin_models()
    perceptnet()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        f.write(to_json(manifest) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT) if n.endswith(".safetensors"))
    print(f"wrote {len(manifest)} cases, {total / 1e6:.2f} MB")
