// Finite-difference checks of matmul, conv2d, resampling and the stochastic masks
// (tolerances: gradcheck.ts).

import { describe, expect, it } from "vitest";
import type { Graph } from "../../compiler/ir/index.ts";
import { checkGrad } from "./gradcheck.ts";

describe("gradients of matmul (finite differences)", () => {
  const mm =
    (transA: boolean, transB: boolean) =>
    (g: Graph, [a, b]: number[]) =>
      g.add("matmul", [a, b], { transA, transB }).id;
  it("plain, transA, transB and both", () => {
    checkGrad([{ shape: [3, 4] }, { shape: [4, 5] }], mm(false, false));
    checkGrad([{ shape: [4, 3] }, { shape: [4, 5] }], mm(true, false));
    checkGrad([{ shape: [3, 4] }, { shape: [5, 4] }], mm(false, true));
    checkGrad([{ shape: [4, 3] }, { shape: [5, 4] }], mm(true, true));
  });
  it("broadcast batch dims (rank 2 x rank 3, [2,1] x [3] batches)", () => {
    checkGrad([{ shape: [3, 4] }, { shape: [2, 4, 5] }], mm(false, false));
    checkGrad([{ shape: [2, 1, 3, 4] }, { shape: [3, 5, 4] }], mm(false, true));
    checkGrad([{ shape: [2, 4, 3] }, { shape: [1, 4, 2] }], mm(true, false));
  });
});

describe("gradients of conv2d (finite differences)", () => {
  const conv = (stride: number[], padding: number[], dilation: number[], groups: number) => (g: Graph, ins: number[]) =>
    g.add("conv2d", ins, { stride, padding, dilation, groups }).id;
  it("3x3, stride 1, padding 1, with bias", () => {
    checkGrad([{ shape: [2, 3, 5, 5] }, { shape: [4, 3, 3, 3] }, { shape: [4] }], conv([1, 1], [1, 1], [1, 1], 1));
  });
  it("stride 2 and dilation 2 with padding 2, odd input", () => {
    checkGrad([{ shape: [1, 2, 7, 6] }, { shape: [3, 2, 3, 3] }], conv([2, 2], [2, 2], [2, 2], 1));
  });
  it("groups 2, non-square kernel, stride (2, 1), bias", () => {
    checkGrad([{ shape: [2, 4, 5, 4] }, { shape: [6, 2, 3, 2] }, { shape: [6] }], conv([2, 1], [1, 0], [1, 1], 2));
  });
  it("patch embedding: kernel = stride = 2", () => {
    checkGrad([{ shape: [1, 3, 4, 6] }, { shape: [5, 3, 2, 2] }, { shape: [5] }], conv([2, 2], [0, 0], [1, 1], 1));
  });
});

describe("gradients of resampling (finite differences)", () => {
  const up =
    (size: number[], mode: string, alignCorners = false) =>
    (g: Graph, [x]: number[]) =>
      g.add("upsample", [x], { size, mode, alignCorners }).id;
  it("upsample nearest: 2x and non-integer 3 -> 5, and a downsample", () => {
    checkGrad([{ shape: [1, 2, 3, 4] }], up([6, 8], "nearest"));
    checkGrad([{ shape: [2, 1, 3, 3] }], up([5, 7], "nearest"));
    checkGrad([{ shape: [1, 2, 5, 4] }], up([3, 2], "nearest"));
  });
  it("upsample bilinear with and without align_corners, up and down", () => {
    checkGrad([{ shape: [1, 2, 3, 4] }], up([6, 7], "bilinear"));
    checkGrad([{ shape: [1, 2, 3, 4] }], up([5, 7], "bilinear", true));
    checkGrad([{ shape: [2, 1, 5, 5] }], up([3, 2], "bilinear"));
  });
  it("pixelShuffle", () => {
    checkGrad([{ shape: [2, 8, 2, 3] }], (g, [x]) => g.add("pixelShuffle", [x], { factor: 2 }).id);
    checkGrad([{ shape: [1, 9, 2, 2] }], (g, [x]) => g.add("pixelShuffle", [x], { factor: 3 }).id);
  });
});

describe("gradients of the stochastic masks (finite differences, same seed)", () => {
  it("dropout: the backward uses the forward's mask", () => {
    const r = checkGrad([{ shape: [4, 9] }], (g, [x]) => g.add("dropout", [x], { p: 0.3, stream: 2 }).id);
    expect(r.maxGrad).toBeGreaterThan(0);
  });
  it("dropPath: whole samples dropped or scaled together", () => {
    checkGrad([{ shape: [8, 3, 2] }], (g, [x]) => g.add("dropPath", [x], { p: 0.5, stream: 7 }).id);
  });
});
