// Finite-difference checks of reductions, softmax and the normalisations (tolerances: gradcheck.ts).

import { describe, it } from "vitest";
import { checkGrad } from "./gradcheck.ts";

const REDUCTIONS: [number[], number[], boolean][] = [
  [[7], [0], false],
  [[3, 5], [1], true],
  [[3, 5], [0], false],
  [[2, 3, 4], [0, 2], false],
  [[2, 3, 4], [-1], true],
  [[2, 3, 4], [0, 1, 2], false],
];

describe("gradients of reductions (finite differences)", () => {
  for (const op of ["sum", "mean", "max"]) {
    it(op, () => {
      for (const [shape, axes, keepdims] of REDUCTIONS) {
        checkGrad([{ shape, values: op === "max" ? "distinct" : "normal" }], (g, [x]) => g.add(op, [x], { axes, keepdims }).id);
      }
    });
  }

  it("softmax over the last and a middle axis", () => {
    for (const [shape, axis] of [
      [[7], 0],
      [[3, 5], -1],
      [[2, 4, 3], 1],
    ] as [number[], number][]) {
      checkGrad([{ shape }], (g, [x]) => g.add("softmax", [x], { axis }).id);
    }
  });
});

describe("gradients of the normalisations (finite differences)", () => {
  it("layerNorm with weight and bias, weight only, and none", () => {
    for (const shape of [
      [3, 7],
      [2, 3, 5],
    ]) {
      const c = shape[shape.length - 1];
      checkGrad([{ shape }, { shape: [c] }, { shape: [c] }], (g, ins) => g.add("layerNorm", ins, { eps: 1e-5 }).id);
      checkGrad([{ shape }, { shape: [c] }], (g, ins) => g.add("layerNorm", ins, { eps: 1e-5 }).id);
      checkGrad([{ shape }], (g, ins) => g.add("layerNorm", ins, { eps: 1e-5 }).id);
    }
  });

  it("groupNorm with affine parameters and without, 2-D and 1-D spatial", () => {
    const cases: [number[], number][] = [
      [[2, 6, 3, 3], 3],
      [[2, 4, 5], 2],
      [[1, 3, 2, 2], 1],
    ];
    for (const [shape, groups] of cases) {
      const c = shape[1];
      checkGrad([{ shape }, { shape: [c] }, { shape: [c] }], (g, ins) => g.add("groupNorm", ins, { groups, eps: 1e-5 }).id);
      checkGrad([{ shape }], (g, ins) => g.add("groupNorm", ins, { groups, eps: 1e-5 }).id);
    }
  });
});
