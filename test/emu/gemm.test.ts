import { describe, expect, it } from "vitest";
import { f32ToBf16, GlobalMemory, roundToBf16 } from "../../runtime/ptx-emu/index.ts";
import { gemmTileKernelPtx, gemmTileNoWaitPtx } from "./kernels/gemm.ts";
import { runKernel } from "./ptx-text.ts";

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

function gemm(
  M: number,
  N: number,
  K: number,
  lda: number,
  ldb: number,
  ldd: number,
  kernel = "gemmTile",
  ptx = gemmTileKernelPtx,
) {
  const a = values(M * lda, 1);
  const b = values(K * ldb, 2);
  const mem = new GlobalMemory();
  const pa = mem.upload(Uint16Array.from(a, f32ToBf16));
  const pb = mem.upload(Uint16Array.from(b, f32ToBf16));
  const pd = mem.alloc(M * ldd * 4);
  const { stats } = runKernel(ptx, kernel, { grid: [N / 16, M / 16], block: 32, params: [pa, pb, pd, K, lda, ldb, ldd] }, mem);
  const d = mem.readF32(pd, M * ldd);
  // Reference: plain matmul of the bf16-rounded inputs, in double.
  const ref = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) ref[m * N + n]! += roundToBf16(a[m * lda + k]!) * roundToBf16(b[k * ldb + n]!);
  return { d, ref, stats };
}

describe("bf16 GEMM tile: cp.async -> ldmatrix (.trans for B) -> mma.sync -> global", () => {
  it("computes one 16x16x16 tile with one warp", () => {
    const { d, ref, stats } = gemm(16, 16, 16, 24, 16, 20);
    for (let m = 0; m < 16; m++) for (let n = 0; n < 16; n++) expect(d[m * 20 + n]).toBeCloseTo(ref[m * 16 + n]!, 5);
    expect(stats.mmaOps).toBe(2);
    expect(stats.instructions.ldmatrix).toBe(2 * 32);
    expect(stats.instructions.cpAsync).toBe(3 * 32 + 32);
    expect(stats.bytes.globalLoad).toBe(2 * 512);
    expect(stats.bytes.globalStore).toBe(16 * 16 * 4);
    expect(stats.bytes.sharedLoad).toBe(2 * 512);
  });

  it("loops over K and tiles a 32x48 output over a 2D grid", () => {
    const M = 32;
    const N = 48;
    const K = 64;
    const { d, ref, stats } = gemm(M, N, K, K, N, N);
    let worst = 0;
    for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(d[i]! - ref[i]!) / Math.max(1, Math.abs(ref[i]!)));
    expect(worst).toBeLessThan(1e-6);
    expect(stats.ctas).toBe(6);
    expect(stats.mmaOps).toBe(6 * 4 * 2);
  });

  it("reads stale shared memory when the cp.async wait is missing", () => {
    const { d } = gemm(16, 16, 16, 16, 16, 16, "gemmTileNoWait", gemmTileNoWaitPtx);
    expect(Array.from(d).some(Number.isNaN)).toBe(true); // unwritten shared memory is 0xffff: a bf16 NaN
  });
});
