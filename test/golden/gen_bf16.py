"""bf16 fixtures (called by gen_ops.py): torch's f32 -> bf16 rounding of awkward values, and a small
graph (matmul + add + gelu) computed by torch in bf16 on the CPU.

Tensors written to test/golden/ops/bf16.safetensors:
  round.f32bits  i32 [n]  the f32 inputs as raw bits (so NaN payloads and -0 survive)
  round.bf16bits i32 [n]  torch's `.to(torch.bfloat16).view(torch.int16)`, as 0..65535
  graph.x [5, 33], graph.w [33, 24], graph.bias [24]   bf16 inputs (stored as exact f32 values)
  graph.m = x @ w, graph.s = m + bias, graph.g = gelu(s)   torch's bf16 results (exact f32 values)
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def _bits(values):
    return torch.tensor(values, dtype=torch.int64).to(torch.int32)


def rounding_inputs():
    g = torch.Generator().manual_seed(20240917)
    parts = []
    # Normal numbers over many binades.
    for scale in [1e-38, 1e-20, 1e-3, 1.0, 1e3, 1e20, 1e37]:
        parts.append(torch.randn(64, generator=g).mul(scale).view(torch.int32))
    # Arbitrary bit patterns: every class of f32 (NaNs included).
    parts.append(torch.randint(-(2**31), 2**31, (512,), generator=g, dtype=torch.int64).to(torch.int32))
    # Exact ties (low half 0x8000), one below and one above, with even and odd upper halves.
    upper = torch.randint(0, 2**16, (128,), generator=g, dtype=torch.int64)
    for low in [0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF]:
        parts.append(((upper << 16) | low).to(torch.int32))
    specials = [
        0x3F808000,  # 1 + 2^-8: a tie, rounds down to 1 (even)
        0x3F818000,  # 1 + 3 * 2^-8: a tie, rounds up to 1 + 2^-6 (even)
        0x3F808001,  # just above the tie: rounds up
        0x00000001,  # the smallest subnormal
        0x00008000,  # a subnormal tie, rounds to 0
        0x00018000,  # a subnormal tie, rounds up to an even upper half
        0x007FFFFF,  # the largest subnormal rounds to the smallest normal
        0x80008000,  # negative subnormal tie
        0x7F7FFFFF,  # FLT_MAX rounds to +inf
        0x7F7F7FFF,  # just below the tie: stays finite
        0x7F7F8000,  # a tie with an odd upper half: rounds up to +inf
        0xFF7FFFFF,  # -FLT_MAX rounds to -inf
        0x7F800000,  # +inf
        0xFF800000,  # -inf
        0x7FC00000,  # quiet NaN
        0xFFC00000,  # negative quiet NaN
        0x7F800001,  # NaN whose payload lives only in the low half
        0x7FBFFFFF,  # signalling NaN with a full payload
        0x80000000,  # -0
        0x00000000,  # +0
    ]
    parts.append(_bits([b - (1 << 32) if b >= 1 << 31 else b for b in specials]))
    return torch.cat(parts)


def write_bf16(path):
    f32bits = rounding_inputs()
    bf16bits = f32bits.view(torch.float32).to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 33, generator=g).to(torch.bfloat16)
    w = (torch.randn(33, 24, generator=g) * 0.3).to(torch.bfloat16)
    bias = torch.randn(24, generator=g).to(torch.bfloat16)
    m = x @ w
    s = m + bias
    out = F.gelu(s)
    tensors = {
        "round.f32bits": f32bits.contiguous(),
        "round.bf16bits": bf16bits.contiguous(),
        "graph.x": x.float(),
        "graph.w": w.float(),
        "graph.bias": bias.float(),
        "graph.m": m.float(),
        "graph.s": s.float(),
        "graph.g": out.float(),
    }
    save_file(tensors, path, metadata={"generator": "test/golden/gen_ops.py"})
