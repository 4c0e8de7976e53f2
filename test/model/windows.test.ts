// The shifted-window tables against values worked out by hand from torchvision's definitions
// (relative index, region labels of the slices (0,-M), (-M,-s), (-s,None), the -100 mask, the
// log-spaced V2 coordinates), and the partition/reverse layout executed on the CPU.

import { describe, expect, it } from "vitest";
import { Module } from "../../compiler/dsl/index.ts";
import {
  cpbCoordinateTable,
  effectiveShift,
  paddedSize,
  relativePositionIndex,
  shiftAttentionMask,
  shiftRegionLabels,
  windowPartition,
  windowReverse,
} from "../../model/perceptnet/windows.ts";
import { hostTensor } from "../../runtime/cpu/index.ts";
import { runCpu, traceModule } from "./helpers.ts";

describe("window tables", () => {
  it("relative position index of a 2x2 window: (dy+1)*3 + (dx+1)", () => {
    expect([...relativePositionIndex(2)]).toEqual([4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4]);
    const idx = relativePositionIndex(7);
    expect(idx.length).toBe(49 * 49);
    expect(Math.max(...idx)).toBe(13 * 13 - 1);
    expect(idx[0]).toBe(6 * 13 + 6); // a token with itself: offset (0, 0)
  });

  it("padding and shift clamping follow torchvision (per axis, M >= padded side -> no shift)", () => {
    expect([paddedSize(10, 4), paddedSize(12, 4), paddedSize(3, 4)]).toEqual([12, 12, 4]);
    expect(effectiveShift(12, 12, 4, 2)).toEqual([2, 2]);
    expect(effectiveShift(4, 12, 4, 2)).toEqual([0, 2]);
    expect(effectiveShift(4, 4, 4, 2)).toEqual([0, 0]);
  });

  it("region labels of a 4x4 map, window 2, shift 1: nine regions row-major", () => {
    expect([...shiftRegionLabels(4, 4, 2, [1, 1])]).toEqual([0, 0, 1, 2, 0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8]);
  });

  it("with the height unshifted, torchvision's last row slice (-0, None) covers every row", () => {
    expect([...shiftRegionLabels(2, 4, 2, [0, 1])]).toEqual([6, 6, 7, 8, 6, 6, 7, 8]);
  });

  it("the shift mask is 0 within a region and -100 across regions, per window", () => {
    const m = shiftAttentionMask(4, 4, 2, [1, 1]);
    const win = (w: number) => Array.from(m.slice(w * 16, (w + 1) * 16));
    expect(win(0)).toEqual(new Array(16).fill(0)); // one region
    // window 1 holds labels [1, 2, 1, 2]
    expect(win(1)).toEqual([0, -100, 0, -100, -100, 0, -100, 0, 0, -100, 0, -100, -100, 0, -100, 0]);
    // window 3 holds four different regions: only the diagonal is 0
    expect(win(3)).toEqual([0, -100, -100, -100, -100, 0, -100, -100, -100, -100, 0, -100, -100, -100, -100, 0]);
  });

  it("V2 coordinates: offsets / (M-1) * 8, then sign * log2(|t| + 1) / 3", () => {
    const t = cpbCoordinateTable(2); // offsets -1, 0, 1 -> -8, 0, 8
    const v = Math.fround(Math.log2(9) / 3);
    expect([...t]).toEqual([-v, -v, -v, 0, -v, v, 0, -v, 0, 0, 0, v, v, -v, v, 0, v, v].map((x) => (x === 0 ? 0 : x)));
    const t8 = cpbCoordinateTable(8);
    expect(t8.length).toBe(15 * 15 * 2);
    expect(t8[0]).toBeCloseTo(-Math.log2(9) / 3, 6);
  });
});

class Partition extends Module {
  constructor(readonly window: number) {
    super();
  }
}

describe("window partition / reverse", () => {
  it("partitions a 4x4 map into 2x2 windows in row-major order and reverses exactly", () => {
    const values = hostTensor(
      [1, 4, 4, 1],
      "f32",
      Array.from({ length: 16 }, (_, i) => i),
    );
    const partition = traceModule(new Partition(2), [1, 4, 4, 1], (m, x) => windowPartition(x as never, m.window));
    const windows = runCpu(partition, new Map(), new Map([["x", values]])).get("y")!;
    expect(windows.shape).toEqual([4, 4, 1]);
    expect([...windows.data]).toEqual([0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
    const reverse = traceModule(new Partition(2), [4, 4, 1], (m, x) => windowReverse(x as never, m.window, 1, 4, 4));
    const back = runCpu(reverse, new Map(), new Map([["x", windows]])).get("y")!;
    expect([...back.data]).toEqual([...values.data]);
  });
});
