// The performance structure of the lowering, each case run on the PTX emulator against runtime/cpu
// (tolerances: helpers.ts) and held to its launch count, in f32 and bf16:
//   - gathers move `vec` elements per thread; contiguous runs load as vectors (the PTX has the
//     vector loads), boundaries that split a vector fall back to per-element reads (still exact)
//   - data movement feeding an elementwise op, an elementwise op feeding data movement, and either
//     feeding a reduction are one kernel (read through the index map, not materialised)
//   - column reductions over many rows, and few long rows, are two launches (f32 partials, then the
//     sum of the partials); a weight gradient with a long K is split along K the same way
//   - a GEMM whose only use is a transpose writes the transposed product (nt / tn swap operands)
//   - a slice that is one contiguous block is a view (no launch)
// Data movement is exact: those outputs are compared bit for bit.

import { describe, expect, it } from "vitest";
import type { DType, Graph, Node } from "../../compiler/ir/index.ts";
import { checkLowering, feedsOf, graphOf, type InputSpec } from "./helpers.ts";

const op = (g: Graph, name: string, inputs: Node[], attrs: Record<string, unknown> = {}) =>
  g.add(
    name,
    inputs.map((n) => n.id),
    attrs as never,
  );
const transpose = (g: Graph, x: Node) => {
  const r = x.shape.length;
  return op(g, "permute", [x], { perm: [...x.shape.keys()].map((i) => (i === r - 2 ? r - 1 : i === r - 1 ? r - 2 : i)) });
};

interface Case {
  name: string;
  inputs: Record<string, InputSpec>;
  body: (g: Graph, x: Record<string, Node>, dtype: DType) => Record<string, Node>;
  launches: number;
  /** Outputs that are pure data movement: equal bit for bit. */
  exact?: boolean;
  /** A fragment one of the kernels' PTX must contain (vector loads). */
  ptx?: RegExp;
}

const cases: Case[] = [
  {
    name: "aligned chain: pad 8 / concat of 16-wide parts / roll 8 / slice from 8, vector loads",
    inputs: { x: { shape: [3, 5, 16] }, y: { shape: [3, 5, 16] } },
    body: (g, x) => {
      const p = op(g, "pad", [x.x], { pads: [0, 0, 1, 0, 8, 8], value: 0.5 });
      const c = op(g, "concat", [p, op(g, "pad", [x.y], { pads: [0, 0, 1, 0, 0, 0], value: 0 })], { axis: 2 });
      const r = op(g, "roll", [c], { shifts: [8, 1], axes: [2, 1] });
      return { y: op(g, "slice", [r], { starts: [0, 1, 8], ends: [3, 6, 48], steps: [1, 1, 1] }) };
    },
    launches: 1,
    exact: true,
    ptx: /ld\.global[.a-z]*\.v[24]\.(b32|f32)/,
  },
  {
    name: "unaligned chain: pad 3 / roll 5 / slice step 2 / transpose: per-element reads, exact",
    inputs: { x: { shape: [4, 6, 10] } },
    body: (g, x) => {
      const p = op(g, "pad", [x.x], { pads: [0, 0, 0, 2, 3, 3], value: -1 });
      const r = op(g, "roll", [p], { shifts: [5], axes: [2] });
      const s = op(g, "slice", [r], { starts: [0, 0, 1], ends: [4, 8, 16], steps: [1, 1, 2] });
      return { y: transpose(g, s) };
    },
    launches: 1,
    exact: true,
  },
  {
    name: "broadcast along the last dim, take on a leading axis, nearest upsample x2 and x3",
    inputs: {
      x: { shape: [2, 3, 1] },
      t: { shape: [5, 8] },
      i: { shape: [6], dtype: "i32", data: [4, 0, 2, 2, 1, 3] },
      u: { shape: [1, 2, 3, 4] },
    },
    body: (g, x) => ({
      b: op(g, "broadcastTo", [x.x], { shape: [2, 3, 16] }),
      k: op(g, "take", [x.t, x.i], { axis: 0 }),
      u2: op(g, "upsample", [x.u], { size: [6, 8], mode: "nearest", alignCorners: false }),
      u3: op(g, "upsample", [x.u], { size: [9, 12], mode: "nearest", alignCorners: false }),
    }),
    launches: 4,
    exact: true,
  },
  {
    name: "an elementwise op reading a permute, and a permute of an elementwise op: one kernel each",
    inputs: { x: { shape: [6, 5, 8] }, b: { shape: [6] }, z: { shape: [4, 8, 3] } },
    body: (g, x) => ({
      y: op(g, "add", [op(g, "exp", [op(g, "permute", [x.x], { perm: [1, 2, 0] })]), x.b]),
      w: op(g, "permute", [op(g, "mul", [op(g, "tanh", [x.z]), x.z])], { perm: [2, 0, 1] }),
    }),
    launches: 2,
  },
  {
    name: "a bias gradient: sum over 8192 rows of a product, two launches (partials)",
    inputs: { a: { shape: [8, 1024, 24] }, b: { shape: [8, 1024, 24] } },
    body: (g, x) => ({ y: op(g, "sum", [op(g, "mul", [x.a, x.b])], { axes: [0, 1], keepdims: false }) }),
    launches: 2,
  },
  {
    name: "mean and max over columns and over scattered axes, few long rows",
    inputs: { x: { shape: [4, 600, 10] }, r: { shape: [3, 4100] } },
    body: (g, x) => ({
      mean: op(g, "mean", [x.x], { axes: [1], keepdims: true }),
      max: op(g, "max", [op(g, "permute", [x.x], { perm: [2, 0, 1] })], { axes: [0, 2], keepdims: false }),
      rows: op(g, "sum", [op(g, "abs", [x.r])], { axes: [1], keepdims: false }),
    }),
    launches: 6,
  },
  {
    name: "a weight gradient over 4096 tokens (A^T B summed over the batch): split along K",
    inputs: { a: { shape: [8, 512, 40] }, b: { shape: [8, 512, 24] } },
    body: (g, x) => ({ w: op(g, "sum", [op(g, "matmul", [x.a, x.b], { transA: true })], { axes: [0], keepdims: false }) }),
    launches: 2,
  },
  {
    name: "the transposed weight gradient and transposed nt / tn products are written by the GEMM",
    inputs: { a: { shape: [1, 96, 40] }, b: { shape: [1, 96, 24] }, c: { shape: [2, 20, 36] }, d: { shape: [2, 28, 36] } },
    body: (g, x) => {
      const w = op(g, "sum", [op(g, "matmul", [x.a, x.b], { transA: true })], { axes: [0], keepdims: true });
      return {
        wT: transpose(g, op(g, "reshape", [w], { shape: [40, 24] })),
        ntT: transpose(g, op(g, "matmul", [x.c, x.d], { transB: true })),
        tnT: transpose(g, op(g, "matmul", [transpose(g, x.c), x.c])),
      };
    },
    launches: 3,
  },
  {
    name: "a contiguous slice (q, k, v of one buffer) is a view read by the GEMM",
    inputs: { qkv: { shape: [3, 2, 24, 16] }, w: { shape: [16, 8] } },
    body: (g, x) => {
      const part = (i: number) =>
        op(g, "slice", [x.qkv], { starts: [i, 0, 0, 0], ends: [i + 1, 2, 24, 16], steps: [1, 1, 1, 1] });
      return { q: op(g, "matmul", [part(0), x.w]), v: op(g, "matmul", [part(2), x.w]) };
    },
    launches: 2,
  },
];

for (const dtype of ["f32", "bf16"] as const) {
  describe(`lowering structure on the emulator vs runtime/cpu, ${dtype}`, () => {
    for (const c of cases) {
      it(c.name, () => {
        const inputs = Object.fromEntries(
          Object.entries(c.inputs).map(([k, s]) => [k, { ...s, dtype: s.dtype === "i32" ? "i32" : dtype }]),
        ) as Record<string, InputSpec>;
        const g = graphOf(inputs, (gr, x) => c.body(gr, x, dtype));
        const r = checkLowering(g, feedsOf(inputs), { label: `${c.name} (${dtype})` });
        expect(r.lowered.plan.launches.length, "launches").toBe(c.launches);
        if (c.exact) for (const [name, o] of r.outputs) expect(Array.from(o.got.data), name).toEqual(Array.from(o.want.data));
        if (c.ptx) expect(r.lowered.plan.modules.some((m) => c.ptx?.test(m.ptx))).toBe(true);
      });
    }
  });
}
