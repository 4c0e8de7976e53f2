// Finite-difference checks of the data-movement ops (tolerances: gradcheck.ts). These ops are
// linear, so the check is exact up to f32 storage rounding.

import { describe, it } from "vitest";
import { checkGrad } from "./gradcheck.ts";

describe("gradients of layout ops (finite differences)", () => {
  it("reshape", () => {
    checkGrad([{ shape: [2, 3, 4] }], (g, [x]) => g.add("reshape", [x], { shape: [4, -1] }).id);
    checkGrad([{ shape: [5] }], (g, [x]) => g.add("reshape", [x], { shape: [1, 5, 1] }).id);
  });

  it("permute", () => {
    checkGrad([{ shape: [2, 3, 4] }], (g, [x]) => g.add("permute", [x], { perm: [2, 0, 1] }).id);
    checkGrad([{ shape: [2, 3, 4, 5] }], (g, [x]) => g.add("permute", [x], { perm: [0, 2, -1, 1] }).id);
  });

  it("roll over one and several axes, negative shifts", () => {
    checkGrad([{ shape: [7] }], (g, [x]) => g.add("roll", [x], { shifts: [3], axes: [0] }).id);
    checkGrad([{ shape: [2, 5, 3] }], (g, [x]) => g.add("roll", [x], { shifts: [-2, 1], axes: [1, -1] }).id);
  });

  it("slice with steps 1, 2 and 3 on odd sizes", () => {
    const slice =
      (starts: number[], ends: number[], steps: number[]) =>
      (g: import("../../compiler/ir/index.ts").Graph, [x]: number[]) =>
        g.add("slice", [x], { starts, ends, steps }).id;
    checkGrad([{ shape: [7] }], slice([2], [6], [1]));
    checkGrad([{ shape: [7] }], slice([1], [7], [2]));
    checkGrad([{ shape: [9, 5] }], slice([0, 1], [9, 5], [3, 2]));
    checkGrad([{ shape: [3, 8, 5] }], slice([1, 2, 0], [3, 7, 5], [1, 3, 1]));
  });

  it("concat of three inputs, first and middle axis", () => {
    checkGrad([{ shape: [2, 3] }, { shape: [1, 3] }, { shape: [4, 3] }], (g, ins) => g.add("concat", ins, { axis: 0 }).id);
    checkGrad(
      [{ shape: [2, 1, 3] }, { shape: [2, 4, 3] }, { shape: [2, 2, 3] }],
      (g, ins) => g.add("concat", ins, { axis: -2 }).id,
    );
  });

  it("pad", () => {
    checkGrad([{ shape: [3, 4] }], (g, [x]) => g.add("pad", [x], { pads: [1, 2, 0, 3], value: 0 }).id);
    checkGrad([{ shape: [2, 3, 3] }], (g, [x]) => g.add("pad", [x], { pads: [0, 0, 2, 1, 1, 1], value: 0.5 }).id);
  });

  it("take with repeated indices, a 2-D index and a middle axis (scatter-add)", () => {
    const take =
      (axis: number) =>
      (g: import("../../compiler/ir/index.ts").Graph, [x, i]: number[]) =>
        g.add("take", [x, i], { axis }).id;
    const index = (shape: number[], data: number[]) => ({
      shape,
      diff: false,
      dtype: "i32" as const,
      data: Int32Array.from(data),
    });
    checkGrad([{ shape: [5, 3] }, index([6], [4, 0, 4, 2, 4, 1])], take(0));
    checkGrad([{ shape: [2, 5, 3] }, index([2, 3], [0, 4, 4, 1, 1, 1])], take(1));
    checkGrad([{ shape: [6] }, index([3, 2], [5, 5, 0, 2, 3, 5])], take(0));
  });

  it("broadcastTo", () => {
    checkGrad([{ shape: [3, 1] }], (g, [x]) => g.add("broadcastTo", [x], { shape: [2, 3, 4] }).id);
    checkGrad([{ shape: [] }], (g, [x]) => g.add("broadcastTo", [x], { shape: [5] }).id);
  });
});
