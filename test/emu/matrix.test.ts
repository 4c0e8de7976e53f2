import { describe, expect, it } from "vitest";
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  GlobalMemory,
  ldmatrixRowCol,
  mmaARowCol,
  mmaBRowCol,
  mmaCRowCol,
  type PtxRuntimeError,
  toF16,
} from "../../runtime/ptx-emu/index.ts";
import { LDMATRIX_VARIANTS, ldmatrixPtx, matrixFaultsPtx, mmaFragmentBf16Ptx, mmaFragmentF16Ptx } from "./kernels/matrix.ts";
import { lineOf, runKernel } from "./ptx-text.ts";

// The fragment layouts as the PTX ISA states them ("Matrix Fragments for mma.m16n8k16 with floating point
// type"), written here independently of runtime/ptx-emu/fragments.ts.
const groupID = (lane: number) => lane >> 2;
const tig = (lane: number) => lane % 4;
const specA = (lane: number, i: number) => [
  i < 2 || (i >= 4 && i < 6) ? groupID(lane) : groupID(lane) + 8,
  i < 4 ? tig(lane) * 2 + (i & 1) : tig(lane) * 2 + (i & 1) + 8,
];
const specB = (lane: number, i: number) => [i < 2 ? tig(lane) * 2 + (i & 1) : tig(lane) * 2 + (i & 1) + 8, groupID(lane)];
const specC = (lane: number, i: number) => [i < 2 ? groupID(lane) : groupID(lane) + 8, tig(lane) * 2 + (i & 1)];

/** A small deterministic pseudo-random integer generator. */
function integers(seed: number, lo: number, hi: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return lo + ((s >>> 8) % (hi - lo + 1));
  };
}

describe("mma.sync.m16n8k16 fragments", () => {
  it("matches the PTX ISA formulas, element by element", () => {
    for (let lane = 0; lane < 32; lane++) {
      for (let i = 0; i < 8; i++) expect(mmaARowCol(lane, i)).toEqual(specA(lane, i));
      for (let i = 0; i < 4; i++) expect(mmaBRowCol(lane, i)).toEqual(specB(lane, i));
      for (let i = 0; i < 4; i++) expect(mmaCRowCol(lane, i)).toEqual(specC(lane, i));
    }
    // Spot checks read off the figures: lane 0 holds A[0][0..1], A[8][0..1], A[0][8..9], A[8][8..9];
    // lane 5 (group 1, thread 1) starts at A[1][2]; B's lane 5 starts at B[2][1]; C's lane 6 at C[1][4].
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => mmaARowCol(0, i))).toEqual([
      [0, 0],
      [0, 1],
      [8, 0],
      [8, 1],
      [0, 8],
      [0, 9],
      [8, 8],
      [8, 9],
    ]);
    expect(mmaARowCol(5, 0)).toEqual([1, 2]);
    expect([0, 1, 2, 3].map((i) => mmaBRowCol(5, i))).toEqual([
      [2, 1],
      [3, 1],
      [10, 1],
      [11, 1],
    ]);
    expect([0, 1, 2, 3].map((i) => mmaCRowCol(6, i))).toEqual([
      [1, 4],
      [1, 5],
      [9, 4],
      [9, 5],
    ]);
  });

  for (const [type, kernel, ptx, encode, decode] of [
    ["bf16", "mmaFragmentBf16", mmaFragmentBf16Ptx, f32ToBf16, bf16ToF32],
    ["f16", "mmaFragmentF16", mmaFragmentF16Ptx, (x: number) => toF16(x), f16ToF32],
  ] as const) {
    it(`computes D = A*B + C on the logical matrices (${type}, D aliasing C too)`, () => {
      const next = integers(type === "bf16" ? 7 : 11, -9, 9);
      const A = Array.from({ length: 16 }, () => Array.from({ length: 16 }, () => next() / 4));
      const B = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => next() / 2));
      const C = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => next() * 1.25));
      for (const row of [...A, ...B]) for (const x of row) expect(decode(encode(x))).toBe(x); // exact in the type
      const a = new Uint32Array(32 * 4);
      const b = new Uint32Array(32 * 2);
      const c = new Float32Array(32 * 4);
      for (let lane = 0; lane < 32; lane++) {
        for (let i = 0; i < 8; i++) {
          const [r, col] = specA(lane, i);
          a[lane * 4 + (i >> 1)]! |= encode(A[r!]![col!]!) << (16 * (i & 1));
        }
        for (let i = 0; i < 4; i++) {
          const [k, n] = specB(lane, i);
          b[lane * 2 + (i >> 1)]! |= encode(B[k!]![n!]!) << (16 * (i & 1));
        }
        for (let i = 0; i < 4; i++) {
          const [r, n] = specC(lane, i);
          c[lane * 4 + i] = C[r!]![n!]!;
        }
      }
      const AB = A.map((row) => Array.from({ length: 8 }, (_, n) => row.reduce((acc, x, k) => acc + x * B[k]![n]!, 0)));
      const mem = new GlobalMemory();
      const pd = mem.alloc(32 * 8 * 4);
      const { stats } = runKernel(
        ptx,
        kernel,
        { grid: 1, block: 32, params: [mem.upload(a), mem.upload(b), mem.upload(c), pd] },
        mem,
      );
      const d = mem.readF32(pd, 32 * 8);
      for (let lane = 0; lane < 32; lane++) {
        for (let i = 0; i < 4; i++) {
          const [r, n] = specC(lane, i);
          expect(d[lane * 8 + i]).toBe(Math.fround(AB[r!]![n!]! + C[r!]![n!]!));
          expect(d[lane * 8 + 4 + i]).toBe(Math.fround(2 * AB[r!]![n!]! + C[r!]![n!]!));
        }
      }
      expect(stats.mmaOps).toBe(2);
      expect(stats.instructions.tensorCore).toBe(64);
    });
  }
});

describe("ldmatrix", () => {
  it("gives each lane the fragment the PTX ISA describes, for x1/x2/x4 with and without .trans", () => {
    // Matrix q, row r, column c holds q * 64 + r * 8 + c + 1; its row lives in a scattered 16-byte slot.
    const slots = Array.from({ length: 32 }, (_, l) => (l * 13 + 5) % 32);
    const value = (q: number, r: number, c: number) => q * 64 + r * 8 + c + 1;
    const data = new Uint16Array(32 * 8);
    for (let l = 0; l < 32; l++) for (let c = 0; c < 8; c++) data[slots[l]! * 8 + c] = value(l >> 3, l & 7, c);
    const mem = new GlobalMemory();
    const out = mem.alloc(32 * 18 * 4);
    const { stats } = runKernel(
      ldmatrixPtx,
      "ldmatrixLayouts",
      { grid: 1, block: 32, params: [mem.upload(data), mem.upload(new Uint32Array(slots)), out] },
      mem,
    );
    const o = mem.readU32(out, 32 * 18);
    for (let lane = 0; lane < 32; lane++) {
      let j = 0;
      for (const v of LDMATRIX_VARIANTS) {
        for (let q = 0; q < v.count; q++, j++) {
          // Spec: lane L receives row L/4, columns 2*(L%4) and 2*(L%4)+1 (the lower column in the low half);
          // with .trans the same positions of the transposed matrix.
          const row = lane >> 2;
          const col = 2 * (lane % 4);
          const lo = v.trans ? value(q, col, row) : value(q, row, col);
          const hi = v.trans ? value(q, col + 1, row) : value(q, row, col + 1);
          expect([lane, j, o[lane * 18 + j]]).toEqual([lane, j, (lo | (hi << 16)) >>> 0]);
          expect(ldmatrixRowCol(lane, 0, v.trans)).toEqual(v.trans ? [col, row] : [row, col]);
        }
      }
    }
    expect(stats.instructions.ldmatrix).toBe(7 * 32);
    expect(stats.bytes.sharedLoad).toBe(18 * 128);
  });
});

describe("matrix instruction faults", () => {
  const fault = (mode: number) => {
    try {
      runKernel(matrixFaultsPtx, "matrixFaults", { grid: 1, block: 32, params: [mode] });
    } catch (e) {
      return e as PtxRuntimeError;
    }
    throw new Error("expected a fault");
  };
  it("rejects a misaligned ldmatrix row address", () => {
    const e = fault(0);
    expect(e.message).toContain("ldmatrix: row 3 of matrix 0 (address from lane 3): misaligned shared access: 16 bytes at 0x32");
    expect(e.at?.line).toBe(lineOf(matrixFaultsPtx, "ldmatrix.sync"));
  });
  it("rejects an mma that part of the warp skipped", () => {
    expect(fault(1).message).toContain("mma.sync: lane 16 of the warp has exited");
  });
});
