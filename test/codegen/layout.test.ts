// The kernel language's layout tables against the PTX emulator's, which were written separately from
// the same PTX ISA sections: register fragments, ldmatrix lane addresses, and the swizzle's bank
// behaviour.

import { describe, expect, it } from "vitest";
import {
  FRAGMENTS,
  fragmentCoord,
  ldmatrixLaneAddress,
  ldmatrixTrans,
  MMA_M16N8K16_BF16,
  swizzledOffset,
  swizzleFor,
  type TileLayout,
  vectorSlot,
} from "../../compiler/tile/index.ts";
import { ldmatrixAddressLane, ldmatrixRowCol, mmaARowCol, mmaBRowCol, mmaCRowCol } from "../../runtime/ptx-emu/index.ts";

const lanes = [...Array(32).keys()];

describe("register fragments match the mma.m16n8k16 operands", () => {
  it("row layout = the A fragment a0..a7", () => {
    for (const l of lanes) for (let e = 0; e < 8; e++) expect(fragmentCoord("row", l, e)).toEqual(mmaARowCol(l, e));
  });

  it("row layout = the accumulator: elements 4h..4h+3 are c0..c3 of the n8 half h", () => {
    for (const l of lanes)
      for (let h = 0; h < 2; h++)
        for (let i = 0; i < 4; i++) {
          const [r, c] = mmaCRowCol(l, i);
          expect(fragmentCoord("row", l, 4 * h + i)).toEqual([r, c + 8 * h]);
        }
  });

  it("col layout (k x n) = the B fragment: registers 2h, 2h+1 are b0..b3 of the n8 half h", () => {
    for (const l of lanes)
      for (let h = 0; h < 2; h++)
        for (let i = 0; i < 4; i++) {
          const [k, n] = mmaBRowCol(l, i);
          expect(fragmentCoord("col", l, 4 * h + i)).toEqual([k, n + 8 * h]);
        }
  });

  it("row layout read as n x k = B^T: registers h and 2+h are b0..b3 of the n8 half h", () => {
    for (const l of lanes)
      for (let h = 0; h < 2; h++) {
        const elems = [2 * h, 2 * h + 1, 4 + 2 * h, 5 + 2 * h];
        elems.forEach((e, i) => {
          const [k, n] = mmaBRowCol(l, i);
          const [r, c] = fragmentCoord("row", l, e);
          expect([c, r]).toEqual([k, n + 8 * h]);
        });
      }
  });

  it("the shape is data: m16n8k16, 8/4/4 elements per thread", () => {
    expect(MMA_M16N8K16_BF16).toMatchObject({ m: 16, n: 8, k: 16, threads: 32, elementsPerThread: { a: 8, b: 4, c: 4 } });
    expect(FRAGMENTS.row.offsets).toHaveLength(8);
  });
});

describe("ldmatrix.x4 lane addresses deliver the fragments", () => {
  // Simulate ldmatrix with the emulator's definitions and our lane-address table: register q of lane
  // l receives, in half j, the element at ldmatrixRowCol(l, j, trans) of matrix q, whose row r was
  // addressed by lane ldmatrixAddressLane(q, r).
  const cases: [TileLayout, boolean][] = [
    ["row", false],
    ["col", false],
    ["row", true],
    ["col", true],
  ];
  for (const [layout, transposed] of cases) {
    it(`${layout} layout from a ${transposed ? "transposed" : "row-major"} tile`, () => {
      const trans = ldmatrixTrans(layout, transposed);
      for (const l of lanes) {
        for (let q = 0; q < 4; q++) {
          for (let j = 0; j < 2; j++) {
            const [mr, mc] = ldmatrixRowCol(l, j, trans);
            const [sr, sc] = ldmatrixLaneAddress(ldmatrixAddressLane(q, mr), transposed);
            const stored = [sr, sc + mc];
            const logical = transposed ? [stored[1], stored[0]] : stored;
            expect(logical, `lane ${l} reg ${q} half ${j}`).toEqual(fragmentCoord(layout, l, 2 * q + j));
          }
        }
      }
    });
  }
});

describe("the swizzle", () => {
  for (const cols of [32, 64, 128]) {
    const s = swizzleFor(cols * 2);
    const bankGroup = (row: number, chunk: number) => (swizzledOffset(s, row, chunk * 16) >> 4) & 7;
    it(`bf16 rows of ${cols}: a bijection on each row's 16-byte chunks`, () => {
      for (let r = 0; r < 16; r++) {
        const chunks = [...Array((cols * 2) / 16).keys()].map((c) => swizzledOffset(s, r, c * 16) - r * cols * 2);
        expect(new Set(chunks).size).toBe(chunks.length);
        expect(Math.max(...chunks)).toBe(cols * 2 - 16);
      }
    });
    it(`bf16 rows of ${cols}: ldmatrix phases (8 rows, one chunk) hit 8 distinct bank groups`, () => {
      for (let r0 = 0; r0 < 32; r0 += 8)
        for (let c = 0; c < (cols * 2) / 16; c++) {
          const groups = [...Array(8).keys()].map((i) => bankGroup(r0 + i, c));
          expect(new Set(groups).size).toBe(8);
        }
    });
    it(`bf16 rows of ${cols}: cp.async quarter-warps (8 consecutive chunks) hit 8 distinct bank groups`, () => {
      const perRow = (cols * 2) / 16;
      for (let first = 0; first < 64; first += 8) {
        const groups = [...Array(8).keys()].map((i) => bankGroup(Math.floor((first + i) / perRow), (first + i) % perRow));
        expect(new Set(groups).size).toBe(8);
      }
    });
  }
  it("an unswizzled 64-byte-row tile would conflict (the check can fail)", () => {
    const s = swizzleFor(64, false);
    const groups = [...Array(8).keys()].map((i) => (swizzledOffset(s, i, 0) >> 4) & 7);
    expect(new Set(groups).size).toBe(2);
  });
});

it("row and column vectors index the distinct rows/cols a thread holds", () => {
  expect([0, 1, 2, 3, 4, 5, 6, 7].map((e) => vectorSlot("row", "row", e).slot)).toEqual([0, 0, 1, 1, 0, 0, 1, 1]);
  expect([0, 1, 2, 3, 4, 5, 6, 7].map((e) => vectorSlot("row", "col", e).slot)).toEqual([0, 1, 0, 1, 2, 3, 2, 3]);
  expect(vectorSlot("col", "row", 0).perBlock).toBe(4);
});
