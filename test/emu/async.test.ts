import { describe, expect, it } from "vitest";
import { GlobalMemory, type PtxRuntimeError } from "../../runtime/ptx-emu/index.ts";
import { cpAsyncFaultPtx, cpAsyncGroupsPtx, cpAsyncZeroFillPtx } from "./kernels/async.ts";
import { lineOf, runKernel } from "./ptx-text.ts";

/** Shared memory starts filled with 0xff bytes, so data nobody wrote reads as 0xffffffff. */
const POISON = 0xffffffff;

describe("cp.async", () => {
  it("lands data only when the issuing thread waits for its group (bar.sync alone is not enough)", () => {
    const mem = new GlobalMemory();
    const words = new Uint32Array(384).map((_, i) => 0x1000 + i);
    const src = mem.upload(words);
    const out = mem.alloc(32 * 64);
    const { stats } = runKernel(cpAsyncGroupsPtx, "cpAsyncGroups", { grid: 1, block: 32, params: [src, out] }, mem);
    const o = mem.readU32(out, 32 * 16);
    for (let t = 0; t < 32; t++) {
      const first = (region: number, thread = t) => 0x1000 + region * 128 + thread * 4;
      const snap = (k: number) => Array.from(o.subarray(t * 16 + k * 3, t * 16 + k * 3 + 3));
      expect(snap(0)).toEqual([POISON, POISON, POISON]); // after bar.sync, before any wait
      expect(snap(1)).toEqual([first(0), POISON, POISON]); // wait_group 2: the oldest group only
      expect(snap(2)).toEqual([first(0), first(1), POISON]); // wait_group 1
      expect(snap(3)).toEqual([first(0), first(1), first(2)]); // wait_all
      expect(snap(4)).toEqual([first(0, t ^ 1), first(1, t ^ 1), first(2, t ^ 1)]); // neighbour's, after bar.sync
    }
    expect(stats.instructions.cpAsync).toBe(32 * (3 + 3 + 3));
    expect(stats.bytes.globalLoad).toBe(32 * 48);
    expect(stats.bytes.sharedStore).toBe(32 * 48);
  });

  it("zero-fills past src-size and for ignore-src", () => {
    const mem = new GlobalMemory();
    const bytes = new Uint8Array(32 * 48).map((_, i) => (i % 251) + 1);
    const src = mem.upload(bytes);
    const out = mem.alloc(32 * 48);
    const { stats } = runKernel(cpAsyncZeroFillPtx, "cpAsyncZeroFill", { grid: 1, block: 32, params: [src, out] }, mem);
    const o = mem.readU8(out, 32 * 48);
    let srcBytes = 0;
    for (let t = 0; t < 32; t++) {
      const row = (k: number) => bytes[t * 48 + k]!;
      const n = t % 17;
      const small = t % 2 === 0 ? 8 : 0;
      const expected = [
        ...Array.from({ length: 16 }, (_, k) => (k < n ? row(k) : 0)),
        ...Array.from({ length: 8 }, (_, k) => (k < small ? row(16 + k) : 0)),
        ...Array.from({ length: 4 }, (_, k) => (k < small / 2 ? row(24 + k) : 0)),
        ...Array.from({ length: 4 }, () => 0xff), // bytes 28..31 are never written: poison
        ...Array.from({ length: 16 }, (_, k) => (t < 16 ? row(32 + k) : 0)),
      ];
      expect(Array.from(o.subarray(t * 48, t * 48 + 48))).toEqual(expected);
      srcBytes += n + small + small / 2 + (t < 16 ? 16 : 0);
    }
    expect(stats.bytes.globalLoad).toBe(srcBytes);
  });

  it("checks the source and destination when the copy is issued", () => {
    const mem = new GlobalMemory();
    const src = mem.alloc(64);
    const issue = lineOf(cpAsyncFaultPtx, "@%p1 cp.async");
    let err = catchError(() => runKernel(cpAsyncFaultPtx, "cpAsyncFault", { grid: 1, block: 1, params: [src, 64, 0] }, mem));
    expect(err.message).toContain("out-of-bounds global access: 16 bytes");
    expect(err.at?.line).toBe(issue);
    err = catchError(() => runKernel(cpAsyncFaultPtx, "cpAsyncFault", { grid: 1, block: 1, params: [src, 8, 0] }, mem));
    expect(err.message).toContain("misaligned global access");
    err = catchError(() => runKernel(cpAsyncFaultPtx, "cpAsyncFault", { grid: 1, block: 1, params: [src, 0, 1] }, mem));
    expect(err.message).toContain("misaligned shared access: 16 bytes at 0x8");
    expect(err.at?.line).toBe(lineOf(cpAsyncFaultPtx, "@!%p1 cp.async"));
  });
});

function catchError(f: () => unknown): PtxRuntimeError {
  try {
    f();
  } catch (e) {
    return e as PtxRuntimeError;
  }
  throw new Error("expected an error");
}
