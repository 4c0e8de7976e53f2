// Fused ops lowered to their kernels (kernels/window-attention.ts, cross-attention.ts, fpn-merge.ts)
// inside whole bf16 graphs on the emulator, each held to the CPU bf16 graph's own accuracy against
// the f32 evaluation (checkAgainstTruth, helpers.ts): PerceptNet's Swin V1 and V2 blocks fused
// (shifted windows on a 6x6 map padded to 8x8: padInput), the FPN decoder fused (3 cross-attentions,
// 3 channels-last FPN merges), an NCHW FPN merge, a cross-attention training step
// (crossAttentionBackward), and the xxs pre-training forward fused. f32 graphs and the window
// attention backward lower too (their runs: test/fusion/lowered.test.ts).

import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { type AnyTensor, F, Module } from "../../compiler/dsl/index.ts";
import { lowerStage } from "../../compiler/frontend/lower-stage.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { lowerGraph, unloweredOps } from "../../compiler/lower/index.ts";
import { fuse } from "../../compiler/passes/index.ts";
import { SwinBlockV1, SwinBlockV2 } from "../../model/perceptnet/blocks.ts";
import { CrossAttention } from "../../model/perceptnet/cross-attention.ts";
import { FpnDecoder, Lateral } from "../../model/perceptnet/decoder.ts";
import { traceWithLoss } from "../fusion/helpers.ts";
import { checkAgainstTruth } from "./helpers.ts";
import { xxsGraph } from "./xxs.ts";

function fused(g: Graph, expected: Record<string, number>): Graph {
  const f = fuse(g);
  for (const [op, count] of Object.entries(expected)) expect(f.counts[op as keyof typeof f.counts], op).toBe(count);
  expect(unloweredOps(f.graph)).toEqual([]);
  return f.graph;
}

const kernelsOf = (g: Graph) => new Set(lowerGraph(g).plan.launches.map((l) => l.kernel.replace(/_[0-9a-f]{12}$/, "")));

class NchwMerge extends Module {
  readonly lateral = new Lateral(12, 8, 2);
  forward(x: AnyTensor, coarse: AnyTensor): AnyTensor {
    const [, , h, w] = x.shape as readonly number[];
    return this.lateral.forward(x as never).add(F.upsample(coarse as never, { size: [h, w], mode: "nearest" }));
  }
}

describe("fused ops on their kernels (bf16, emulator vs the CPU's accuracy)", () => {
  const block = { dim: 16, heads: 1, window: 4, shift: 2, mlpRatio: 2, dropPath: 0 };
  for (const [name, make] of [
    ["Swin V1 block", () => new SwinBlockV1(block)],
    ["Swin V2 block", () => new SwinBlockV2(block)],
  ] as const) {
    it(`${name}: windowAttention (shifted, padded 6x6 -> 8x8)`, () => {
      const m = make();
      const g = fused(
        traceWithLoss(m, { x: [1, 6, 6, 16] }, (mm, { x }) => mm.forward(x as never) as AnyTensor, { dtype: "bf16" }),
        {
          windowAttention: 1,
        },
      );
      expect([...kernelsOf(g)].some((k) => k.startsWith("window_attention_fwd"))).toBe(true);
      checkAgainstTruth(g, name);
    });
  }

  it("FPN decoder: 3 cross-attentions and 3 channels-last FPN merges", () => {
    const decoder = new FpnDecoder([8, 16, 32, 64], { dim: 32, heads: 2, groups: 4, ffnRatio: 2 });
    const sides = [16, 8, 4, 2];
    const inputs = Object.fromEntries(sides.map((s, i) => [`f${i}`, [1, s, s, [8, 16, 32, 64][i]]]));
    const g = fused(
      traceWithLoss(decoder, inputs, (m, xs) => m.forward(sides.map((_, i) => xs[`f${i}`]) as never) as AnyTensor, {
        dtype: "bf16",
      }),
      { crossAttention: 3, fpnMerge: 3 },
    );
    const k = kernelsOf(g);
    for (const name of ["cross_attention_fwd", "fpn_merge_normalize_nhwc"])
      expect(
        [...k].some((x) => x.startsWith(name)),
        name,
      ).toBe(true);
    checkAgainstTruth(g, "decoder");
  });

  it("an NCHW FPN merge (lateral GEMM batched over images, conv bias in the normalize kernel)", () => {
    const g = fused(
      traceWithLoss(new NchwMerge(), { x: [2, 12, 9, 10], coarse: [2, 8, 5, 5] }, (m, { x, coarse }) => m.forward(x, coarse), {
        dtype: "bf16",
      }),
      { fpnMerge: 1 },
    );
    expect([...kernelsOf(g)].some((x) => x.startsWith("fpn_merge_normalize_nchw_cb"))).toBe(true);
    checkAgainstTruth(g, "nchw merge");
  });

  it("cross-attention training step: crossAttentionBackward (dq, then dk/dv) into the packed gradient", () => {
    const m = new CrossAttention(32, 2);
    const f = fused(
      traceWithLoss(
        m,
        { q: [2, 20, 32], ctx: [2, 5, 32] },
        (mm, { q, ctx }) => mm.forward(q as never, ctx as never) as AnyTensor,
        {
          dtype: "bf16",
        },
      ),
      { crossAttention: 1 },
    );
    const g = grad(f, { loss: "loss", wrtInputs: ["q", "ctx"] });
    expect(g.nodes.some((n) => n.op === "crossAttentionBackward")).toBe(true);
    expect(unloweredOps(g)).toEqual([]);
    checkAgainstTruth(g, "cross-attention step", { zero: ["grad/k.bias"] });
  });

  it("xxs pre-training forward, fused", () => {
    const g = fused(xxsGraph("pretrain", "forward", "bf16"), { windowAttention: 8, crossAttention: 3, fpnMerge: 3 });
    const r = checkAgainstTruth(g, "xxs pretrain forward fused");
    expect(r.run.stats.some((s) => s.kernel.startsWith("window_attention_fwd"))).toBe(true);
  });
});

describe("fused configurations that used to fall back", () => {
  it("f32 graphs (CUDA-core kernels) and windowAttentionBackward lower to kernels; test/fusion/lowered.test.ts runs them", () => {
    const m = new SwinBlockV1({ dim: 16, heads: 1, window: 4, shift: 2, mlpRatio: 2, dropPath: 0 });
    const f32 = fuse(traceWithLoss(m, { x: [1, 6, 6, 16] }, (mm, { x }) => mm.forward(x as never) as AnyTensor)).graph;
    expect(unloweredOps(f32)).toEqual([]);
    expect([...kernelsOf(f32)].some((k) => k.startsWith("window_attention_simt_fwd"))).toBe(true);
    const bf16 = traceWithLoss(m, { x: [1, 6, 6, 16] }, (mm, { x }) => mm.forward(x as never) as AnyTensor, { dtype: "bf16" });
    const step = grad(fuse(bf16).graph, { loss: "loss" });
    expect(unloweredOps(step)).toEqual([]);
    const k = kernelsOf(step);
    for (const name of ["window_attention_bwd_q", "window_attention_bwd_kv", "reduce_cols_sum_f32_bf16"])
      expect(
        [...k].some((x) => x.startsWith(name)),
        name,
      ).toBe(true);
    const r = lowerStage(step, step, true);
    expect(r.graph).toBe("fused");
  });
});
