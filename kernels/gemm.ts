// GEMM on tensor cores: C = epilogue(A . B), bf16 inputs, f32 accumulation, bf16 or f32 output.
// Layouts: "nn" A[M,K] B[K,N]; "nt" B stored as [N,K] (C = A B^T); "tn" A stored as [K,M] (C = A^T B).
// Batched: grid.z walks the batch with element strides (0 broadcasts an operand). Any M, N, K: tiles
// past the edges are zero-filled by cp.async src-size and stores are predicated.
//
// Structure: a CTA computes a BM x BN tile with warpsM x warpsN warps (each a WM x WN register tile).
// K advances in BK steps through a `stages`-deep cp.async ring: while the tensor cores work on step
// kt, the copies of steps kt+1 .. kt+stages-1 are in flight.
//
// Epilogue, in order: v = alpha * acc; v += bias[col]; v = act(v); v += residual[row, col]; store.

import {
  defineKernel,
  type Expr,
  type GlobalPtr,
  gelu,
  geluTanh,
  i32,
  type KernelProgram,
  type ParamSpec,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";

export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  warpsM: number;
  warpsN: number;
  stages: number;
}

/**
 * 128x128x32 with 4 warps of 64x64 and 3 stages: 48 KB of shared memory, ~210 registers (2 CTAs per
 * SM). The fastest of the tile sweep in bench/RESULTS.md (8 warps of 64x32 was 6% slower).
 */
export const GEMM_TILE_LARGE: GemmTile = { bm: 128, bn: 128, bk: 32, warpsM: 2, warpsN: 2, stages: 3 };
/** 128x128x32 with 8 warps of 64x32: ~125 registers, for epilogues that need registers. */
export const GEMM_TILE_WIDE: GemmTile = { bm: 128, bn: 128, bk: 32, warpsM: 2, warpsN: 4, stages: 3 };
/** 64x64x32 with 4 warps of 32x32: for small or skinny problems (more CTAs). */
export const GEMM_TILE_SMALL: GemmTile = { bm: 64, bn: 64, bk: 32, warpsM: 2, warpsN: 2, stages: 3 };

export interface GemmConfig {
  layout: "nn" | "nt" | "tn";
  out: "bf16" | "f32";
  batched?: boolean;
  /** alpha: a scalar f32 param multiplying the product. */
  scale?: boolean;
  /** bias[N] added to every row, in this dtype. */
  bias?: "bf16" | "f32";
  activation?: "gelu" | "geluTanh";
  /** residual[M, N] (row stride ldr) added last, in this dtype. */
  residual?: "bf16" | "f32";
  /** Default: defaultGemmTile(config). */
  tile?: GemmTile;
  /**
   * Element alignment of every row start of A and B (leading dims, batch strides and base offsets):
   * 8 -> 16-byte cp.async, 2 -> 4-byte cp.async, 1 -> element copies. The caller computes it.
   */
  alignA?: number;
  alignB?: number;
  /** Element alignment of C's (and the residual's) rows: 2 enables paired stores. */
  alignC?: number;
}

/**
 * The tile a config gets by default: 64x64 warp tiles, except where the epilogue (residual loads,
 * activations) or element-wise copies (rows not 4-byte aligned) need the registers of the 64x32 warp
 * tile: ptxas spills otherwise (test/codegen/ptxas.test.ts catches it), and on the H200 bias + GELU
 * ran 12% faster with 8 warps of 64x32 (bench/RESULTS.md).
 */
export function defaultGemmTile(c: GemmConfig): GemmTile {
  return c.residual || c.activation || (c.alignA ?? 8) < 2 || (c.alignB ?? 8) < 2 ? GEMM_TILE_WIDE : GEMM_TILE_LARGE;
}

export function gemmName(c: GemmConfig): string {
  const t = c.tile ?? defaultGemmTile(c);
  const epi = [c.scale ? "s" : "", c.bias ? `b${c.bias}` : "", c.activation ?? "", c.residual ? `r${c.residual}` : ""]
    .filter(Boolean)
    .join("_");
  return [
    "gemm",
    c.layout,
    c.batched ? "batched" : "",
    c.out,
    `${t.bm}x${t.bn}x${t.bk}s${t.stages}w${t.warpsM}x${t.warpsN}`,
    epi,
    `a${c.alignA ?? 8}${c.alignB ?? 8}${c.alignC ?? 2}`,
  ]
    .filter(Boolean)
    .join("_");
}

export function gemmKernel(c: GemmConfig): KernelProgram {
  const t = c.tile ?? defaultGemmTile(c);
  const wm = t.bm / t.warpsM;
  const wn = t.bn / t.warpsN;
  const transA = c.layout === "tn";
  const transB = c.layout === "nt";
  const params: Record<string, ParamSpec> = { a: ptr("bf16"), b: ptr("bf16"), c: ptr(c.out) };
  if (c.bias) params.bias = ptr(c.bias);
  if (c.residual) params.residual = ptr(c.residual);
  Object.assign(params, {
    M: scalar("i32"),
    N: scalar("i32"),
    K: scalar("i32"),
    lda: scalar("i32"),
    ldb: scalar("i32"),
    ldc: scalar("i32"),
  });
  if (c.residual) params.ldr = scalar("i32");
  if (c.scale) params.alpha = scalar("f32");
  if (c.batched)
    Object.assign(params, { batch: scalar("i32"), strideA: scalar("i64"), strideB: scalar("i64"), strideC: scalar("i64") });
  if (c.batched && c.residual) params.strideR = scalar("i64");
  const layoutDoc = { nn: "A[M,K] B[K,N]", nt: "A[M,K] B[N,K]^T", tn: "A[K,M]^T B[K,N]" }[c.layout];

  return defineKernel(
    {
      name: gemmName(c),
      params,
      warps: t.warpsM * t.warpsN,
      grid: (p) => [
        (p.N as Expr<"i32">).ceilDiv(t.bn),
        (p.M as Expr<"i32">).ceilDiv(t.bm),
        c.batched ? (p.batch as Expr<"i32">) : 1,
      ],
      doc: `C = ${c.activation ?? ""}(${c.scale ? "alpha " : ""}${layoutDoc}${c.bias ? " + bias" : ""})${c.residual ? " + residual" : ""} -> ${c.out}`,
    },
    (k, p) => {
      // The param set depends on the config, so values are looked up by name.
      const int = (name: string) => p[name] as Expr<"i32">;
      const gptr = (name: string) => p[name] as GlobalPtr;
      const [M, N, K] = [int("M"), int("N"), int("K")];
      const z = k.wide(k.blockIdx.z);
      const batchOffset = (stride: string) => (c.batched ? z.mul(p[stride] as Expr<"i64">) : undefined);
      const row0 = k.let(k.blockIdx.y.mul(t.bm), "row0");
      const col0 = k.let(k.blockIdx.x.mul(t.bn), "col0");
      const warpRow = k.let(k.warp.div(t.warpsN).mul(wm), "warpRow");
      const warpCol = k.let(k.warp.rem(t.warpsN).mul(wn), "warpCol");

      // Global views in storage orientation.
      const a = gptr("a").view(
        transA
          ? { rows: K, cols: M, rowStride: int("lda"), offset: batchOffset("strideA"), align: c.alignA ?? 8 }
          : { rows: M, cols: K, rowStride: int("lda"), offset: batchOffset("strideA"), align: c.alignA ?? 8 },
      );
      const b = gptr("b").view(
        transB
          ? { rows: N, cols: K, rowStride: int("ldb"), offset: batchOffset("strideB"), align: c.alignB ?? 8 }
          : { rows: K, cols: N, rowStride: int("ldb"), offset: batchOffset("strideB"), align: c.alignB ?? 8 },
      );
      const sA = transA
        ? k.sharedTile("sA", "bf16", t.bk, t.bm, { stages: t.stages })
        : k.sharedTile("sA", "bf16", t.bm, t.bk, { stages: t.stages });
      const sB = transB
        ? k.sharedTile("sB", "bf16", t.bn, t.bk, { stages: t.stages })
        : k.sharedTile("sB", "bf16", t.bk, t.bn, { stages: t.stages });
      const loadStage = (kt: Expr<"i32">, stage: Expr<"i32">) => {
        const k0 = kt.mul(t.bk);
        if (transA) k.copyTile(sA, a, k0, row0, { stage });
        else k.copyTile(sA, a, row0, k0, { stage });
        if (transB) k.copyTile(sB, b, col0, k0, { stage });
        else k.copyTile(sB, b, k0, col0, { stage });
      };

      const acc = k.regTile("acc", "f32", wm, wn);
      const fa = k.regTile("fragA", "bf16", wm, 16);
      const fb = transB ? k.regTile("fragB", "bf16", wn, 16, "row") : k.regTile("fragB", "bf16", 16, wn, "col");
      k.fill(acc, 0);

      const kTiles = k.let(K.ceilDiv(t.bk), "kTiles");
      // Prologue: stages-1 steps in flight (steps past K copy nothing but zeros).
      for (let s = 0; s < t.stages - 1; s++) {
        k.if(kTiles.gt(s), () => loadStage(i32(s), i32(s)));
        k.commitGroup();
      }
      k.for(
        0,
        kTiles,
        (kt) => {
          // Step kt has landed for this thread; the barrier publishes everyone's copies and retires the
          // stage read in step kt-1, which the next copy overwrites.
          k.waitGroup(t.stages - 2);
          k.sync();
          const next = k.let(kt.add(t.stages - 1), "next");
          k.if(next.lt(kTiles), () => loadStage(next, next.rem(t.stages)));
          k.commitGroup();
          const stage = k.let(kt.rem(t.stages), "stage");
          for (let kk = 0; kk < t.bk; kk += 16) {
            if (transA) k.loadTile(fa, sA, { row0: kk, col0: warpRow, stage, transposed: true });
            else k.loadTile(fa, sA, { row0: warpRow, col0: kk, stage });
            if (transB) k.loadTile(fb, sB, { row0: warpCol, col0: kk, stage });
            else k.loadTile(fb, sB, { row0: kk, col0: warpCol, stage });
            k.mma(acc, fa, fb);
          }
        },
        { name: "kt" },
      );
      k.waitGroup(0);

      // Epilogue on the accumulator, then one predicated store.
      const tileRow = k.let(row0.add(warpRow), "tileRow");
      const tileCol = k.let(col0.add(warpCol), "tileCol");
      const bias = c.bias ? gptr("bias").view({ rows: M, cols: N, rowStride: 0, align: 1 }) : undefined;
      const residual = c.residual
        ? gptr("residual").view({ rows: M, cols: N, rowStride: int("ldr"), offset: batchOffset("strideR"), align: c.alignC ?? 2 })
        : undefined;
      if (c.scale || bias || c.activation || residual) {
        k.map(
          acc,
          (m) => {
            let v = m.x;
            if (c.scale) v = v.mul(p.alpha as Expr<"f32">);
            if (bias) v = v.add(m.load(bias));
            if (c.activation === "gelu") v = gelu(v);
            if (c.activation === "geluTanh") v = geluTanh(v);
            if (residual) v = v.add(m.load(residual));
            return v;
          },
          { origin: [tileRow, tileCol] },
        );
      }
      const out = gptr("c").view({
        rows: M,
        cols: N,
        rowStride: int("ldc"),
        offset: batchOffset("strideC"),
        align: c.alignC ?? 2,
      });
      k.storeTile(out, acc, tileRow, tileCol);
    },
  );
}
