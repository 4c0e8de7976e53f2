// Fused FPN merge and cross-attention == the unfused graph, on the CPU, forward and every gradient:
// PerceptNet's own decoder (model/perceptnet/decoder.ts: laterals + GroupNorm, nearest top-down
// merges, gated pre-norm cross-attention to P5), the cross-attention module alone, and a merge on an
// NCHW input (no permute to fold). Near misses the passes must leave alone.
//
// Tolerances (f32) as in window-attention.test.ts: forward 1e-5 and gradients 1e-4 of each
// tensor's scale (GroupNorm's and softmax's adjoints cancel; measured worst ~1e-6). A key bias
// gets no gradient under softmax (it shifts a whole row of logits), so its gradient is compared in
// absolute terms (compareFused's `zero` list).

import { describe, expect, it } from "vitest";
import { type AnyTensor, F, Module, nn } from "../../compiler/dsl/index.ts";
import { fuse } from "../../compiler/passes/index.ts";
import { CrossAttention } from "../../model/perceptnet/cross-attention.ts";
import { FpnDecoder, Lateral } from "../../model/perceptnet/decoder.ts";
import { compareFused, randomInputs, randomParams, traceWithLoss } from "./helpers.ts";

const decoderConfig = { dim: 16, heads: 2, groups: 4, ffnRatio: 2 };
const channels = [8, 16, 32, 64];

function traceDecoder(sides: readonly [number, number][]) {
  const decoder = new FpnDecoder(channels, decoderConfig);
  const inputs = Object.fromEntries(sides.map(([h, w], i) => [`f${i}`, [2, h, w, channels[i]]]));
  return traceWithLoss(decoder, inputs, (m, xs) => m.forward(sides.map((_, i) => xs[`f${i}`]) as never) as AnyTensor);
}

describe("decoder: fused == unfused (forward and all gradients, f32)", () => {
  for (const sides of [
    [
      [16, 16],
      [8, 8],
      [4, 4],
      [2, 2],
    ],
    [
      [15, 13],
      [8, 7],
      [4, 4],
      [2, 2],
    ], // odd sizes: nearest upsampling by a non-integer factor
  ] as [number, number][][]) {
    it(`levels ${sides.map((s) => s.join("x")).join(", ")}: 3 FPN merges (NHWC laterals) and 3 cross-attentions`, () => {
      const g = traceDecoder(sides);
      const f = fuse(g);
      expect(f.counts).toEqual({ windowAttention: 0, fpnMerge: 3, crossAttention: 3 });
      const merges = f.graph.nodes.filter((n) => n.op === "fpnMerge");
      expect(merges.map((n) => n.attrs.layout)).toEqual(["nhwc", "nhwc", "nhwc"]);
      expect(f.graph.nodes.filter((n) => n.op === "softmax")).toEqual([]);
      const wrt = sides.map((_, i) => `f${i}`);
      const r = compareFused(g, f.graph, randomParams(g, 5), randomInputs(g, 6), wrt);
      expect(r.forward).toBeLessThan(1e-5);
      expect(r.gradients, r.worst).toBeLessThan(1e-4);
      for (const z of r.zero) expect(z).toMatch(/attn\.k\.bias$/);
    });
  }
});

describe("crossAttention alone", () => {
  for (const [heads, dim, queries, keys] of [
    [1, 32, 20, 4],
    [4, 64, 33, 9],
  ]) {
    it(`${heads} heads, C=${dim}, ${queries} queries, ${keys} keys/values`, () => {
      const module = new CrossAttention(dim, heads);
      const g = traceWithLoss(
        module,
        { q: [2, queries, dim], ctx: [2, keys, dim] },
        (m, { q, ctx }) => m.forward(q as never, ctx as never) as AnyTensor,
      );
      const f = fuse(g);
      expect(f.counts.crossAttention).toBe(1);
      const r = compareFused(g, f.graph, randomParams(g, 7), randomInputs(g, 8), ["q", "ctx"]);
      expect(r.forward).toBeLessThan(1e-5);
      expect(r.gradients, r.worst).toBeLessThan(1e-4);
      expect(r.zero).toEqual(["grad/k.bias"]);
    });
  }

  it("attention dropout in training is not fused", () => {
    const module = new CrossAttention(16, 2, 0.1);
    const g = traceWithLoss(
      module,
      { q: [1, 8, 16], ctx: [1, 4, 16] },
      (m, { q, ctx }) => m.forward(q as never, ctx as never) as AnyTensor,
      {
        training: true,
      },
    );
    expect(fuse(g).counts.crossAttention).toBe(0);
  });
});

/** lateral(x) + upsample(coarse): an FPN merge whose input is already NCHW, and variants that must not fuse. */
class Merge extends Module {
  readonly lateral = new Lateral(12, 8, 2);
  readonly conv3 = new nn.Conv2d(12, 8, 3, { padding: 1 });
  constructor(readonly variant: "plain" | "bilinear" | "conv3x3" | "reused") {
    super();
  }
  forward(x: AnyTensor, coarse: AnyTensor): AnyTensor {
    const [, , h, w] = x.shape as readonly number[];
    const mode = this.variant === "bilinear" ? "bilinear" : "nearest";
    const up = F.upsample(coarse as never, { size: [h, w], mode });
    const lat =
      this.variant === "conv3x3" ? this.lateral.norm.forward(this.conv3.forward(x as never)) : this.lateral.forward(x as never);
    const merged = lat.add(up);
    return this.variant === "reused" ? merged.add(lat.mul(2)) : merged;
  }
}

describe("fpnMerge alone", () => {
  const trace = (variant: Merge["variant"]) =>
    traceWithLoss(new Merge(variant), { x: [2, 12, 9, 10], coarse: [2, 8, 5, 5] }, (m, { x, coarse }) => m.forward(x, coarse));

  it("NCHW input: fused == unfused, no permute folded", () => {
    const g = trace("plain");
    const f = fuse(g);
    expect(f.counts.fpnMerge).toBe(1);
    expect(f.graph.nodes.find((n) => n.op === "fpnMerge")?.attrs.layout).toBe("nchw");
    const r = compareFused(g, f.graph, randomParams(g, 9), randomInputs(g, 10), ["x", "coarse"]);
    expect(r.forward).toBeLessThan(1e-5);
    expect(r.gradients, r.worst).toBeLessThan(1e-4);
  });

  for (const variant of ["bilinear", "conv3x3", "reused"] as const) {
    it(`${variant}: left alone`, () => {
      const g = trace(variant);
      const f = fuse(g);
      expect(f.counts.fpnMerge).toBe(0);
      expect(f.graph.nodes.length).toBe(g.nodes.length);
    });
  }
});
