// Lowered matmuls and convolutions, run on the PTX emulator against runtime/cpu: every GEMM layout
// (nn, nt, tn from transA/transB attrs and from folded transposes), batch broadcasting (walkable by
// one stride, and not), folded epilogues (scale, bias, GELU, residual), convolutions (1x1 direct,
// padded 3x3 via im2col, strided and dilated, patch embedding, groups, bias) and their input and
// weight gradients, in f32 (CUDA-core GEMM) and bf16 (tensor cores). Sizes are deliberately not
// multiples of the GEMM tiles (64/128) or of 16. Tolerances: test/lower/helpers.ts.

import { describe, expect, it } from "vitest";
import type { DType, Graph, Node } from "../../compiler/ir/index.ts";
import { checkLowering, constant, feedsOf, graphOf, type InputSpec } from "./helpers.ts";

type Body = (g: Graph, x: Record<string, Node>, dtype: DType) => Record<string, Node>;

interface Case {
  name: string;
  inputs: Record<string, InputSpec>;
  body: Body;
  /** Expected launches (checks that fusion happened), per dtype-independent count. */
  launches?: number;
}

const mm = (g: Graph, a: Node, b: Node, attrs: Record<string, boolean> = {}) => g.add("matmul", [a.id, b.id], attrs);
const t = (g: Graph, x: Node) => {
  const r = x.shape.length;
  return g.add("permute", [x.id], { perm: [...x.shape.keys()].map((i) => (i === r - 2 ? r - 1 : i === r - 1 ? r - 2 : i)) });
};

const matmulCases: Case[] = [
  {
    name: "nn 37x45 . 45x29",
    inputs: { a: { shape: [37, 45] }, b: { shape: [45, 29] } },
    body: (g, x) => ({ y: mm(g, x.a, x.b) }),
    launches: 1,
  },
  {
    name: "transB attr, batch broadcast B (a linear layer), bias + GELU + residual folded",
    inputs: { a: { shape: [3, 20, 33] }, w: { shape: [17, 33] }, bias: { shape: [17] }, r: { shape: [3, 20, 17] } },
    body: (g, x) => {
      const h = g.add("gelu", [g.add("add", [mm(g, x.a, x.w, { transB: true }).id, x.bias.id]).id], { approximate: "none" });
      return { y: g.add("add", [h.id, x.r.id]) };
    },
    launches: 1,
  },
  {
    name: "folded transposes: A^T B (tn) and A B^T (nt), tanh GELU",
    inputs: { a: { shape: [2, 24, 19] }, b: { shape: [2, 24, 21] }, c: { shape: [2, 17, 21] } },
    body: (g, x) => ({
      tn: mm(g, t(g, x.a), x.b),
      nt: g.add("gelu", [mm(g, x.b, t(g, x.c)).id], { approximate: "tanh" }),
    }),
    launches: 2,
  },
  {
    name: "batched [2,3] both operands, scale folded",
    inputs: { a: { shape: [2, 3, 19, 24] }, b: { shape: [2, 3, 24, 21] } },
    body: (g, x, d) => ({ y: g.add("mul", [mm(g, x.a, x.b).id, constant(g, 0.37, d).id]) }),
    launches: 1,
  },
  {
    name: "broadcast one stride cannot walk ([2,1] x [1,3] batches): materialised",
    inputs: { a: { shape: [2, 1, 8, 16] }, b: { shape: [1, 3, 16, 9] } },
    body: (g, x) => ({ y: mm(g, x.a, x.b) }),
  },
  {
    name: "A^T B^T (no GEMM layout): one operand transposed first; K = 1",
    inputs: { a: { shape: [5, 7] }, b: { shape: [11, 5] }, p: { shape: [49, 1] }, q: { shape: [40, 1] } },
    body: (g, x) => ({ y: mm(g, x.a, x.b, { transA: true, transB: true }), k1: mm(g, x.p, x.q, { transB: true }) }),
  },
  {
    name: "a weight gradient (A^T B summed over the batch dims): one GEMM with the batches stacked along K",
    inputs: { x: { shape: [2, 3, 7, 10] }, dy: { shape: [2, 3, 7, 9] } },
    body: (g, x) => ({ dw: g.add("sum", [mm(g, x.x, x.dy, { transA: true }).id], { axes: [0, 1], keepdims: true }) }),
    launches: 1,
  },
  {
    name: "a transpose with another reader stays materialised; bias on a [1,1,N] shape",
    inputs: { a: { shape: [9, 12] }, b: { shape: [9, 10] }, bias: { shape: [1, 10] } },
    body: (g, x) => {
      const at = t(g, x.a);
      return { y: g.add("add", [mm(g, at, x.b).id, x.bias.id]), at };
    },
  },
];

const conv = (
  g: Graph,
  x: Node,
  w: Node,
  b: Node | undefined,
  o: { stride?: number[]; padding?: number[]; dilation?: number[]; groups?: number } = {},
) =>
  g.add("conv2d", b ? [x.id, w.id, b.id] : [x.id, w.id], {
    stride: o.stride ?? [1, 1],
    padding: o.padding ?? [0, 0],
    dilation: o.dilation ?? [1, 1],
    groups: o.groups ?? 1,
  });

interface ConvGeo {
  name: string;
  x: number[];
  w: number[];
  stride?: number[];
  padding?: number[];
  dilation?: number[];
  groups?: number;
}

const convGeometries: ConvGeo[] = [
  { name: "1x1 direct", x: [2, 5, 7, 6], w: [9, 5, 1, 1] },
  { name: "3x3 pad 1", x: [2, 5, 9, 11], w: [6, 5, 3, 3], padding: [1, 1] },
  { name: "patch embedding 4x4 stride 4", x: [1, 3, 16, 12], w: [8, 3, 4, 4], stride: [4, 4] },
  {
    name: "3x3 stride 2, dilation 2, pad 2, groups 2",
    x: [2, 4, 10, 9],
    w: [6, 2, 3, 3],
    stride: [2, 2],
    padding: [2, 2],
    dilation: [2, 2],
    groups: 2,
  },
];

function convOut(c: ConvGeo): number[] {
  const [s, p, d] = [c.stride ?? [1, 1], c.padding ?? [0, 0], c.dilation ?? [1, 1]];
  const size = (i: number) => Math.floor((c.x[2 + i] + 2 * p[i] - d[i] * (c.w[2 + i] - 1) - 1) / s[i]) + 1;
  return [c.x[0], c.w[0], size(0), size(1)];
}

const convCases: Case[] = convGeometries.flatMap((c): Case[] => {
  const attrs = {
    stride: c.stride ?? [1, 1],
    padding: c.padding ?? [0, 0],
    dilation: c.dilation ?? [1, 1],
    groups: c.groups ?? 1,
  };
  const y = convOut(c);
  return [
    {
      name: `conv2d ${c.name} + bias`,
      inputs: { x: { shape: c.x }, w: { shape: c.w }, b: { shape: [c.w[0]] } },
      body: (g, x) => ({ y: conv(g, x.x, x.w, x.b, attrs), noBias: conv(g, x.x, x.w, undefined, attrs) }),
    },
    {
      name: `conv2dBackwardInput and conv2dBackwardWeight, ${c.name}`,
      inputs: { x: { shape: c.x }, w: { shape: c.w }, dy: { shape: y } },
      body: (g, x) => ({
        dx: g.add("conv2dBackwardInput", [x.dy.id, x.w.id], { ...attrs, inputSize: c.x.slice(2) }),
        dw: g.add("conv2dBackwardWeight", [x.x.id, x.dy.id], { ...attrs, kernelSize: c.w.slice(2) }),
      }),
    },
  ];
});

function run(c: Case, dtype: "f32" | "bf16") {
  const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, s]) => [k, { ...s, dtype }])) as Record<string, InputSpec>;
  const g = graphOf(inputs, (gr, x) => c.body(gr, x, dtype));
  const r = checkLowering(g, feedsOf(inputs), { label: `${c.name} (${dtype})` });
  if (c.launches !== undefined) expect(r.lowered.plan.launches.length, "launches").toBe(c.launches);
  return r;
}

for (const dtype of ["f32", "bf16"] as const) {
  describe(`matmul lowering, ${dtype}`, () => {
    for (const c of matmulCases) it(c.name, () => run(c, dtype));
  });
  describe(`conv2d lowering, ${dtype}`, () => {
    for (const c of convCases) it(c.name, () => run(c, dtype));
  });
}

describe("GEMM kernel choice", () => {
  it("bf16 runs on tensor cores (mma.sync), f32 on CUDA cores", () => {
    const c = matmulCases[1];
    expect(run(c, "bf16").run.stats[0].stats.mmaOps).toBeGreaterThan(0);
    expect(run(c, "f32").run.stats[0].stats.mmaOps).toBe(0);
  });
});
