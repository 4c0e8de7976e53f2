// Every other lowering rule on the PTX emulator against runtime/cpu, in f32 and bf16: elementwise
// regions (broadcasting, casts, compares, where), reductions over any axes, softmax on any axis,
// LayerNorm / GroupNorm and their backward, data-movement chains, resampling and its adjoint, take
// and its adjoint, constants, and outputs that would alias feeds. Shapes are odd on purpose (tails of
// every vector width and of the 128-thread blocks). Tolerances: test/lower/helpers.ts.

import { describe, expect, it } from "vitest";
import type { DType, Graph, Node } from "../../compiler/ir/index.ts";
import { checkLowering, constant, feedsOf, graphOf, type InputSpec } from "./helpers.ts";

interface Case {
  name: string;
  inputs: Record<string, InputSpec>;
  body: (g: Graph, x: Record<string, Node>, dtype: DType) => Record<string, Node>;
  /** Expected launch count (that a chain or region became one kernel). */
  launches?: number;
  /** f32 only (integer or dtype-specific cases). */
  only?: DType;
}

const op = (g: Graph, name: string, inputs: Node[], attrs: Record<string, unknown> = {}) =>
  g.add(
    name,
    inputs.map((n) => n.id),
    attrs as never,
  );

const cases: Case[] = [
  {
    name: "elementwise region: broadcasting, compare, where, exp/log/sqrt/pow, casts -> one kernel",
    inputs: { x: { shape: [3, 5, 12] }, b: { shape: [12] }, s: { shape: [5, 1] } },
    body: (g, x, d) => {
      const pos = op(g, "gt", [x.x, constant(g, 0, d)]);
      const a = op(g, "gelu", [op(g, "add", [op(g, "mul", [x.x, constant(g, 2, d)]), x.b])], { approximate: "none" });
      const e = op(g, "exp", [op(g, "mul", [x.s, x.x])]);
      const w = op(g, "where", [pos, a, e]);
      const l = op(g, "log", [op(g, "add", [op(g, "sqrt", [op(g, "abs", [w])]), constant(g, 1, d)])]);
      const p = op(g, "pow", [op(g, "abs", [x.b]), constant(g, 1.5, d)]);
      return { y: op(g, "cast", [op(g, "sub", [l, p])], { dtype: "f32" }) };
    },
    launches: 1,
  },
  {
    name: "elementwise: maximum/minimum/div/sigmoid/tanh/erf/relu/neg/rsqrt, two outputs",
    inputs: { x: { shape: [7, 9] }, y: { shape: [7, 9] } },
    body: (g, x, d) => {
      const m = op(g, "maximum", [x.x, x.y]);
      const n = op(g, "minimum", [op(g, "sigmoid", [x.x]), op(g, "tanh", [x.y])]);
      const q = op(g, "div", [op(g, "erf", [m]), op(g, "add", [op(g, "relu", [op(g, "neg", [n])]), constant(g, 0.5, d)])]);
      return { q, r: op(g, "rsqrt", [op(g, "add", [op(g, "mul", [m, m]), constant(g, 1, d)])]) };
    },
  },
  {
    name: "reductions: columns, rows, non-contiguous axes, all axes, keepdims, max and mean",
    inputs: { x: { shape: [3, 7, 5, 6] } },
    body: (g, x) => ({
      cols: op(g, "sum", [x.x], { axes: [1], keepdims: false }),
      rows: op(g, "mean", [x.x], { axes: [2, 3], keepdims: true }),
      gaps: op(g, "max", [x.x], { axes: [0, 2], keepdims: false }),
      all: op(g, "sum", [x.x], { axes: [0, 1, 2, 3], keepdims: false }),
      unit: op(g, "sum", [op(g, "reshape", [x.x], { shape: [3, 7, 1, 30] })], { axes: [2], keepdims: true }),
    }),
  },
  {
    name: "softmax on the last axis and on an inner axis",
    inputs: { x: { shape: [5, 37] }, y: { shape: [3, 6, 4] } },
    body: (g, x) => ({ last: op(g, "softmax", [x.x], { axis: -1 }), inner: op(g, "softmax", [x.y], { axis: 1 }) }),
  },
  {
    name: "layerNorm: affine, weight only, none; layerNormBackward with and without weight",
    inputs: { x: { shape: [7, 48] }, w: { shape: [48] }, b: { shape: [48] }, dy: { shape: [7, 48] }, z: { shape: [5, 20] } },
    body: (g, x) => ({
      affine: op(g, "layerNorm", [x.x, x.w, x.b], { eps: 1e-5 }),
      weight: op(g, "layerNorm", [x.x, x.w], { eps: 1e-5 }),
      plain: op(g, "layerNorm", [x.z], { eps: 1e-5 }),
      dx: op(g, "layerNormBackward", [x.x, x.dy, x.w], { eps: 1e-5 }),
      dxPlain: op(g, "layerNormBackward", [x.x, x.dy], { eps: 1e-5 }),
    }),
  },
  {
    name: "groupNorm and groupNormBackward: affine and plain, spatial 15",
    inputs: { x: { shape: [2, 6, 5, 3] }, w: { shape: [6] }, b: { shape: [6] }, dy: { shape: [2, 6, 5, 3] } },
    body: (g, x) => ({
      affine: op(g, "groupNorm", [x.x, x.w, x.b], { groups: 3, eps: 1e-5 }),
      plain: op(g, "groupNorm", [x.x], { groups: 2, eps: 1e-5 }),
      dx: op(g, "groupNormBackward", [x.x, x.dy, x.w], { groups: 3, eps: 1e-5 }),
      dxPlain: op(g, "groupNormBackward", [x.x, x.dy], { groups: 2, eps: 1e-5 }),
    }),
  },
  {
    name: "a window-partition chain (reshape, permute, pad, roll, slice with steps) -> one gather",
    inputs: { x: { shape: [2, 6, 7, 5] } },
    body: (g, x) => {
      const p = op(g, "pad", [x.x], { pads: [0, 0, 0, 2, 0, 1, 0, 0], value: -1.5 });
      const r = op(g, "roll", [p], { shifts: [-2, 3], axes: [1, 2] });
      const w = op(g, "reshape", [r], { shape: [2, 2, 4, 2, 4, 5] });
      const t = op(g, "permute", [w], { perm: [0, 1, 3, 2, 4, 5] });
      const s = op(g, "slice", [t], { starts: [0, 0, 1, 0, 0, 1], ends: [2, 2, 2, 4, 4, 5], steps: [1, 1, 1, 2, 1, 3] });
      return { y: op(g, "reshape", [s], { shape: [-1, 2] }) };
    },
    launches: 1,
  },
  {
    name: "concat of chains, broadcastTo, pixelShuffle, nearest upsample (integer and table factors)",
    inputs: { a: { shape: [2, 3, 4, 4] }, b: { shape: [2, 8, 2, 2] }, c: { shape: [2, 1, 4, 1] }, d: { shape: [1, 2, 3, 5] } },
    body: (g, x) => ({
      cat: op(
        g,
        "concat",
        [x.a, op(g, "pixelShuffle", [x.b], { factor: 2 }), op(g, "broadcastTo", [x.c], { shape: [2, 5, 4, 4] })],
        { axis: 1 },
      ),
      up: op(g, "upsample", [x.d], { size: [7, 10], mode: "nearest", alignCorners: false }),
    }),
  },
  {
    name: "take with a constant index and with an input index (axis 0 and an inner axis)",
    inputs: {
      t: { shape: [9, 3] },
      idx: { shape: [2, 4], dtype: "i32", data: [8, 0, 3, 3, 1, 7, 2, 8] },
      x: { shape: [2, 5, 6] },
    },
    body: (g, x) => {
      const k = g.add("const", [], { shape: [3], dtype: "i32", data: Int32Array.of(4, 0, 4) });
      return { rows: op(g, "take", [x.t, x.idx], { axis: 0 }), inner: op(g, "take", [x.x, k], { axis: 1 }) };
    },
  },
  {
    name: "takeBackward with repeated indices: constant (inverse map) and input (scan)",
    inputs: { dy: { shape: [3, 8, 2] }, idx: { shape: [8], dtype: "i32", data: [4, 0, 4, 2, 4, 1, 0, 5] } },
    body: (g, x) => {
      const k = g.add("const", [], { shape: [8], dtype: "i32", data: Int32Array.of(6, 6, 0, 1, 3, 1, 6, 2) });
      return {
        scan: op(g, "takeBackward", [x.dy, x.idx], { axis: 1, size: 6 }),
        csr: op(g, "takeBackward", [x.dy, k], { axis: 1, size: 7 }),
      };
    },
  },
  {
    name: "bilinear upsample (both corner rules) and upsampleBackward (nearest and bilinear)",
    inputs: { x: { shape: [2, 3, 3, 5] }, dy: { shape: [2, 3, 7, 11] } },
    body: (g, x) => ({
      up: op(g, "upsample", [x.x], { size: [7, 11], mode: "bilinear", alignCorners: false }),
      upAligned: op(g, "upsample", [x.x], { size: [4, 9], mode: "bilinear", alignCorners: true }),
      dxNearest: op(g, "upsampleBackward", [x.dy], { inputSize: [3, 5], mode: "nearest", alignCorners: false }),
      dxBilinear: op(g, "upsampleBackward", [x.dy], { inputSize: [3, 5], mode: "bilinear", alignCorners: false }),
    }),
  },
  {
    name: "constants: a large splat (fill kernel), a table, an i32 cast",
    inputs: { x: { shape: [300, 230] } },
    body: (g, x, d) => ({
      y: op(g, "add", [x.x, constant(g, 0.25, d, [300, 230])]),
      i: op(g, "cast", [op(g, "mul", [x.x, constant(g, 3, d)])], { dtype: "i32" }),
    }),
  },
  {
    name: "outputs that are feeds or views of feeds are copies; a view of a temp is an alias",
    inputs: { x: { shape: [4, 6] } },
    body: (g, x, d) => {
      const y = op(g, "exp", [x.x]);
      return {
        same: x.x,
        view: op(g, "reshape", [x.x], { shape: [24] }),
        y,
        yView: op(g, "reshape", [y], { shape: [6, 4] }),
        c: constant(g, 2, d, [3]),
      };
    },
  },
];

for (const dtype of ["f32", "bf16"] as const) {
  describe(`op lowering on the emulator vs runtime/cpu, ${dtype}`, () => {
    for (const c of cases) {
      if (c.only && c.only !== dtype) continue;
      it(c.name, () => {
        const inputs = Object.fromEntries(
          Object.entries(c.inputs).map(([k, s]) => [k, { ...s, dtype: s.dtype === "i32" ? "i32" : dtype }]),
        ) as Record<string, InputSpec>;
        const g = graphOf(inputs, (gr, x) => c.body(gr, x, dtype));
        const r = checkLowering(g, feedsOf(inputs), { label: `${c.name} (${dtype})` });
        if (c.launches !== undefined) expect(r.lowered.plan.launches.length).toBe(c.launches);
      });
    }
  });
}

describe("random masks", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    it(`dropout and dropPath masks equal the CPU's bit for bit (${dtype}, two seeds)`, () => {
      const inputs: Record<string, InputSpec> = { x: { shape: [3, 7, 33], dtype } };
      const g = graphOf(inputs, (gr, x) => ({
        drop: op(gr, "dropout", [x.x], { p: 0.3, stream: 5 }),
        path: op(gr, "dropPath", [x.x], { p: 0.5, stream: 9 }),
      }));
      const feeds = feedsOf(inputs);
      for (const seed of [0, 12345]) {
        const r = checkLowering(g, feeds, { seed, label: `masks seed ${seed}` });
        expect(r.lowered.plan.seed).toBeDefined();
        for (const [, o] of r.outputs) {
          const zeros = (t: ArrayLike<number>) => Array.from(t, (v) => v === 0);
          expect(zeros(o.got.data)).toEqual(zeros(o.want.data));
          // f32: x * f32(1/(1-p)) vs the CPU's f64 product rounded once: at most one f32 ulp apart.
          for (let i = 0; i < o.want.data.length; i++)
            expect(Math.abs(o.got.data[i] - o.want.data[i])).toBeLessThanOrEqual(
              Math.abs(o.want.data[i]) * (dtype === "f32" ? 2 ** -23 : 2 ** -8),
            );
        }
      }
    });
  }
});
