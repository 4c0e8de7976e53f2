// Finite-difference checks of the pointwise ops' gradients (tolerances: see gradcheck.ts).

import { describe, expect, it } from "vitest";
import type { Graph } from "../../compiler/ir/index.ts";
import { checkGrad, type Operand, type Values } from "./gradcheck.ts";

const SHAPES = [[7], [3, 5], [2, 3, 4]];

function unary(op: string, kind: Values = "normal", attrs = {}) {
  for (const shape of SHAPES) {
    const r = checkGrad([{ shape, values: kind }], (g, [x]) => g.add(op, [x], attrs).id);
    expect(r.maxGrad).toBeGreaterThan(0);
  }
}

describe("gradients of unary ops (finite differences)", () => {
  it("neg", () => unary("neg"));
  it("exp", () => unary("exp"));
  it("log", () => unary("log", "positive"));
  it("sqrt", () => unary("sqrt", "positive"));
  it("rsqrt", () => unary("rsqrt", "positive"));
  it("abs", () => unary("abs", "awayFromZero"));
  it("sigmoid", () => unary("sigmoid"));
  it("relu", () => unary("relu", "awayFromZero"));
  it("tanh", () => unary("tanh"));
  it("erf", () => unary("erf"));
  it("gelu (erf)", () => unary("gelu", "normal", { approximate: "none" }));
  it("gelu (tanh)", () => unary("gelu", "normal", { approximate: "tanh" }));
});

/** Same shapes, right-aligned broadcasting both ways, and a scalar operand. */
const PAIRS: [number[], number[]][] = [
  [
    [3, 5],
    [3, 5],
  ],
  [
    [3, 1, 5],
    [4, 5],
  ],
  [
    [1, 5],
    [3, 1],
  ],
  [[2, 3], []],
];

function binary(op: string, a: Values = "normal", b: Values = "normal") {
  for (const [sa, sb] of PAIRS) {
    checkGrad(
      [
        { shape: sa, values: a },
        { shape: sb, values: b },
      ],
      (g, [x, y]) => g.add(op, [x, y]).id,
    );
  }
}

describe("gradients of binary ops with broadcasting (finite differences)", () => {
  it("add", () => binary("add"));
  it("sub", () => binary("sub"));
  it("mul", () => binary("mul"));
  it("div", () => binary("div", "normal", "awayFromZero"));
  it("pow (both operands)", () => binary("pow", "positive", "normal"));
  it("pow by a constant exponent", () => {
    checkGrad([{ shape: [3, 4], values: "awayFromZero" }], (g, [x]) => {
      const two = g.add("const", [], { shape: [], dtype: "f32", data: Float32Array.of(2) }).id;
      return g.add("pow", [x, two]).id;
    });
  });
  // maximum/minimum: operands drawn 0.15 apart (no ties; ties are in conventions.test.ts)
  const apart = (a: number[], b: number[]): Operand[] => {
    const n = a.reduce((p, q) => p * q, 1);
    return [
      { shape: a, values: Array.from({ length: n }, (_, i) => ((i * 7) % 11) * 0.3 - 1.5) },
      { shape: b, values: Array.from({ length: b.reduce((p, q) => p * q, 1) }, (_, i) => ((i * 5) % 7) * 0.3 - 0.95) },
    ];
  };
  for (const op of ["maximum", "minimum"]) {
    it(op, () => {
      for (const [sa, sb] of PAIRS) checkGrad(apart(sa, sb), (g, [x, y]) => g.add(op, [x, y]).id);
    });
  }
});

describe("gradients of select and compare ops", () => {
  it("where, with the condition broadcast against both branches", () => {
    const build = (g: Graph, [c, a, b]: number[]) => g.add("where", [c, a, b]).id;
    const cond = (shape: number[], n: number): Operand => ({
      shape,
      diff: false,
      data: Float32Array.from({ length: n }, (_, i) => (i * 3) % 2),
    });
    checkGrad([cond([3, 5], 15), { shape: [3, 5] }, { shape: [3, 5] }], build);
    checkGrad([cond([3, 1], 3), { shape: [1, 5] }, { shape: [3, 5] }], build);
    checkGrad([cond([4], 4), { shape: [2, 4] }, { shape: [] }], build);
  });
  for (const op of ["eq", "lt", "le", "gt", "ge"]) {
    it(`${op} has zero gradient`, () => {
      const r = checkGrad(
        [
          { shape: [3, 4], values: "distinct" },
          { shape: [4], values: "awayFromZero" },
        ],
        (g, [x, y]) => g.add(op, [x, y]).id,
      );
      expect(r.maxAbsErr).toBe(0); // both sides exactly zero
    });
  }
  it("cast f32 -> bf16 -> f32 passes the gradient back in f32 (rounding off, so differences are smooth)", () => {
    const r = checkGrad(
      [{ shape: [3, 5] }, { shape: [5] }],
      (g, [x, y]) => {
        const xb = g.add("cast", [x], { dtype: "bf16" }).id;
        const yb = g.add("cast", [y], { dtype: "bf16" }).id;
        return g.add("cast", [g.add("mul", [xb, yb]).id], { dtype: "f32" }).id;
      },
      { roundBf16: false },
    );
    expect(r.maxGrad).toBeGreaterThan(0);
  });
});
