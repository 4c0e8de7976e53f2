// Fused window attention == the unfused graph, on the CPU: forward outputs and every gradient
// (parameters and the input map, through compiler/autodiff's grad) for PerceptNet's own V1 and V2
// modules (model/perceptnet/window-attention.ts), shifted and not, with padding, over head dims
// 32/64/128 and windows 7/8/12/16. And near misses the pass must leave alone.
//
// Tolerances (f32): forward 1e-5 of the output's scale: both sides compute the same sums, the
// fused reference in f64 with one final rounding, the unfused graph rounding each op to f32 (~6e-8
// each, about 20 ops deep). Gradients 1e-4 of each tensor's scale: the softmax adjoint
// dS = P (dP - rowsum(P dP)) cancels, so the unfused graph's f32 rounding of dP (~6e-8 |dP|) is
// amplified by |dP| / |dS| (measured worst here: ~2e-6).

import { describe, expect, it } from "vitest";
import type { AnyTensor } from "../../compiler/dsl/index.ts";
import { fuse } from "../../compiler/passes/index.ts";
import { WindowAttentionV1, WindowAttentionV2 } from "../../model/perceptnet/window-attention.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { compareFused, difference, randomInputs, randomParams, traceWithLoss, withAttrs } from "./helpers.ts";

interface Case {
  headDim: number;
  heads: number;
  window: number;
  map: [number, number];
  batch: number;
  shifted: boolean;
}

const cases: Case[] = [
  { headDim: 32, heads: 2, window: 7, map: [10, 12], batch: 2, shifted: true }, // padded to 14x14, shift 3 on both axes
  { headDim: 64, heads: 2, window: 8, map: [9, 8], batch: 1, shifted: true }, // padded to 16x8; W fits one window: shift [4, 0]
  { headDim: 32, heads: 1, window: 12, map: [24, 24], batch: 1, shifted: false }, // 4 windows of 144, no padding
  { headDim: 64, heads: 1, window: 12, map: [13, 12], batch: 1, shifted: true }, // padded to 24x12, shift [6, 0]
  { headDim: 128, heads: 1, window: 16, map: [16, 20], batch: 1, shifted: true }, // padded to 16x32, shift [0, 8]
  { headDim: 32, heads: 2, window: 8, map: [8, 8], batch: 1, shifted: false }, // one window, nothing to pad
];

const versions = { v1: WindowAttentionV1, v2: WindowAttentionV2 } as const;

function trace(
  version: keyof typeof versions,
  c: Case,
  opts: { training?: boolean; attnDropout?: number; dtype?: "f32" | "bf16" } = {},
) {
  const dim = c.headDim * c.heads;
  const shift = c.shifted ? Math.floor(c.window / 2) : 0;
  const module = new versions[version]({
    dim,
    heads: c.heads,
    window: c.window,
    shift,
    dropout: { attn: opts.attnDropout ?? 0, proj: 0 },
  });
  return traceWithLoss(module, { x: [c.batch, ...c.map, dim] }, (m, { x }) => m.forward(x as never) as AnyTensor, opts);
}

const label = (c: Case) =>
  `d=${c.headDim} M=${c.window} map ${c.map.join("x")}${c.shifted ? " shifted" : ""}${c.map.some((s) => s % c.window) ? " padded" : ""}`;

describe("windowAttention: fused == unfused (forward and all gradients, f32)", () => {
  for (const version of ["v1", "v2"] as const) {
    for (const c of cases) {
      it(`${version} ${label(c)}`, () => {
        const g = trace(version, c);
        const f = fuse(g);
        expect(f.counts).toEqual({ windowAttention: 1, fpnMerge: 0, crossAttention: 0 });
        const ops = f.graph.nodes.map((n) => n.op);
        for (const gone of ["softmax", "roll", "pad", "take", "slice"]) expect(ops, gone).not.toContain(gone);
        const wa = f.graph.nodes.find((n) => n.op === "windowAttention")!;
        const s = Math.floor(c.window / 2);
        const padded = c.map.map((m) => Math.ceil(m / c.window) * c.window);
        expect(wa.attrs.shift).toEqual(c.shifted ? padded.map((p) => (p > c.window ? s : 0)) : [0, 0]);
        expect(wa.attrs.cosine).toBe(version === "v2");
        expect(wa.attrs.padInput).toBe(padded[0] !== c.map[0] || padded[1] !== c.map[1]);
        const params = randomParams(g, 3);
        const r = compareFused(g, f.graph, params, randomInputs(g, 4), ["x"]);
        expect(r.forward).toBeLessThan(1e-5);
        expect(r.gradients, r.worst).toBeLessThan(1e-4);
        expect(r.zero).toEqual([]);
      });
    }
  }
});

describe("windowAttention pass: near misses are left alone", () => {
  const c = cases[0];
  const g = trace("v1", c);
  const nodes = (op: string) => g.nodes.filter((n) => n.op === op);
  const unchanged = (h: typeof g) => {
    const f = fuse(h);
    expect(f.counts.windowAttention).toBe(0);
    expect(f.graph.nodes.length).toBe(h.nodes.length);
  };

  it("attention dropout (training) is not fused", () => {
    const t = trace("v1", c, { training: true, attnDropout: 0.1 });
    expect(t.nodes.some((n) => n.op === "dropout")).toBe(true);
    unchanged(t);
  });

  it("the probabilities read by another node (a graph output) block the fusion", () => {
    const h = withAttrs(g, 0, {});
    h.setOutput("probs", nodes("softmax")[0].id);
    unchanged(h);
  });

  it("a shift mask that is not the geometry's (one entry changed) is refused", () => {
    const mask = g.nodes.find((n) => n.op === "const" && n.shape.length === 4)!;
    const data = Float32Array.from(mask.attrs.data as Float32Array);
    const i = data.indexOf(-100);
    data[i] = 0;
    unchanged(withAttrs(g, mask.id, { data }));
  });

  it("a relative index that is not M x M's is refused", () => {
    const take = nodes("take")[0];
    const index = Int32Array.from(g.node(take.inputs[1]).attrs.data as Int32Array);
    [index[0], index[1]] = [index[1], index[0]];
    unchanged(withAttrs(g, take.inputs[1], { data: index }));
  });

  it("padding with a non-zero value (padded tokens would not read the qkv bias) is refused", () => {
    unchanged(withAttrs(g, nodes("pad")[0].id, { value: 1 }));
  });

  it("a roll back by the wrong amount is refused", () => {
    const back = nodes("roll")[1];
    unchanged(withAttrs(g, back.id, { shifts: [1, 3] }));
  });
});

describe("windowAttention in bf16", () => {
  // The unfused graph rounds each of ~20 ops to bf16 (2^-9 relative each), the fused op once at the
  // end; against the f32 graph the fused output must be at least as close as the unfused one, up to
  // one bf16 step of the output's scale (2^-8). Measured: V1 0.009 vs 0.012, V2 0.049 vs 0.099
  // (V2's logits are cosines times a scale up to 100, so a rounded cosine moves a logit by ~0.2).
  for (const version of ["v1", "v2"] as const) {
    it(`${version}: fuses (casts sit outside the chain) and tracks f32 at least as well as the unfused graph`, () => {
      const c = cases[0];
      const g32 = trace(version, c);
      const g16 = trace(version, c, { dtype: "bf16" });
      const f = fuse(g16);
      expect(f.counts.windowAttention).toBe(1);
      const params = randomParams(g32, 3);
      const inputs = randomInputs(g32, 4);
      const y = (g: typeof g32) => execute(g, { params, inputs }).outputs.get("y") as HostTensor;
      const truth = y(g32);
      const rel = (t: HostTensor) => {
        const d = difference(t, truth);
        return d.diff / d.scale;
      };
      const unfused = rel(y(g16));
      const fused = rel(y(f.graph));
      expect(fused).toBeLessThan(unfused + 2 ** -8);
      expect(fused).toBeGreaterThan(0); // it did compute in bf16
    });
  }
});
