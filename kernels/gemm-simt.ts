// GEMM on the CUDA cores in f32: the f32 graphs' matmuls and convolutions (tensor cores take bf16
// only), with the params, layouts and epilogues of gemm.ts, so compiler/lower drives both the same
// way. A CTA computes a 64x64 tile of C with 256 threads, 4x4 outputs each (rows ty + 16i, cols
// tx + 16j: neighbouring threads read neighbouring shared words); K advances 16 at a time through
// shared memory (k-major, so the inner loop reads one word of A and one of B per product).
// Every element load is predicated, so any M, N, K and any alignment work.

import {
  defineKernel,
  type Expr,
  type GlobalPtr,
  gelu,
  geluTanh,
  type KernelProgram,
  type ParamSpec,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";
import type { GemmConfig } from "./gemm.ts";

export type SimtGemmConfig = Omit<GemmConfig, "tile" | "alignA" | "alignB" | "alignC" | "bias" | "residual"> & {
  bias?: "f32";
  residual?: "f32";
};

const TILE = 64;
const BK = 16;
const THREADS = 256;
const PER = 4; // outputs per thread along each axis

export function simtGemmName(c: SimtGemmConfig): string {
  const epi = [c.scale ? "s" : "", c.bias ? "b" : "", c.activation ?? "", c.residual ? "r" : ""].filter(Boolean).join("_");
  return ["gemm_simt", c.layout, c.batched ? "batched" : "", c.out, epi].filter(Boolean).join("_");
}

export function simtGemmKernel(c: SimtGemmConfig): KernelProgram {
  const transA = c.layout === "tn";
  const transB = c.layout === "nt";
  const params: Record<string, ParamSpec> = { a: ptr("f32"), b: ptr("f32"), c: ptr(c.out) };
  if (c.bias) params.bias = ptr("f32");
  if (c.residual) params.residual = ptr("f32");
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
  return defineKernel(
    {
      name: simtGemmName(c),
      params,
      warps: THREADS / 32,
      grid: (p) => [
        (p.N as Expr<"i32">).ceilDiv(TILE),
        (p.M as Expr<"i32">).ceilDiv(TILE),
        c.batched ? (p.batch as Expr<"i32">) : 1,
      ],
      doc: `f32 C = ${c.activation ?? ""}(${c.scale ? "alpha " : ""}A.B ${c.layout}${c.bias ? " + bias" : ""})${c.residual ? " + residual" : ""} on CUDA cores`,
    },
    (k, p) => {
      const int = (name: string) => p[name] as Expr<"i32">;
      const gptr = (name: string) => p[name] as GlobalPtr;
      const [M, N, K] = [int("M"), int("N"), int("K")];
      const z = k.wide(k.blockIdx.z);
      const base = (stride: string) => (c.batched ? k.let(z.mul(p[stride] as Expr<"i64">), `base_${stride}`) : undefined);
      const [baseA, baseB, baseC] = [base("strideA"), base("strideB"), base("strideC")];
      const baseR = c.residual ? base("strideR") : undefined;
      const at = (b: Expr<"i64"> | undefined, row: Expr<"i32">, ld: Expr<"i32">, col: Expr<"i32">) => {
        const i = k.wide(row).mul(k.wide(ld)).add(k.wide(col));
        return b ? b.add(i) : i;
      };
      const row0 = k.let(k.blockIdx.y.mul(TILE), "row0");
      const col0 = k.let(k.blockIdx.x.mul(TILE), "col0");
      const tx = k.let(k.tid.rem(16), "tx");
      const ty = k.let(k.tid.div(16), "ty");
      // k-major tiles: sA[kk * 64 + m], sB[kk * 64 + n].
      const sA = k.sharedArray("sA", "f32", BK * TILE);
      const sB = k.sharedArray("sB", "f32", BK * TILE);
      const acc = Array.from({ length: PER * PER }, (_, i) => k.var("f32", 0, `acc${i}`));
      k.for(
        0,
        K.ceilDiv(BK),
        (kt) => {
          const k0 = k.let(kt.mul(BK), "k0");
          for (let q = 0; q < (BK * TILE) / THREADS; q++) {
            const e = k.tid.add(q * THREADS);
            // A element (m, kk): contiguous along k when stored [M, K], along m when stored [K, M].
            const [am, ak] = transA ? [e.rem(TILE), e.div(TILE)] : [e.div(BK), e.rem(BK)];
            const [gm, gk] = [row0.add(am), k0.add(ak)];
            const [va] = k.loadGlobal(gptr("a"), transA ? at(baseA, gk, int("lda"), gm) : at(baseA, gm, int("lda"), gk), {
              pred: gm.lt(M).and(gk.lt(K)),
            });
            k.storeShared(sA, ak.mul(TILE).add(am), va);
            // B element (kk, n): contiguous along n when stored [K, N], along k when stored [N, K].
            const [bk, bn] = transB ? [e.rem(BK), e.div(BK)] : [e.div(TILE), e.rem(TILE)];
            const [gk2, gn] = [k0.add(bk), col0.add(bn)];
            const [vb] = k.loadGlobal(gptr("b"), transB ? at(baseB, gn, int("ldb"), gk2) : at(baseB, gk2, int("ldb"), gn), {
              pred: gk2.lt(K).and(gn.lt(N)),
            });
            k.storeShared(sB, bk.mul(TILE).add(bn), vb);
          }
          k.sync();
          for (let kk = 0; kk < BK; kk++) {
            const as = Array.from({ length: PER }, (_, i) => k.loadShared(sA, ty.add(kk * TILE + 16 * i)) as Expr<"f32">);
            const bs = Array.from({ length: PER }, (_, j) => k.loadShared(sB, tx.add(kk * TILE + 16 * j)) as Expr<"f32">);
            for (let i = 0; i < PER; i++)
              for (let j = 0; j < PER; j++) k.assign(acc[i * PER + j], acc[i * PER + j].add(as[i].mul(bs[j])));
          }
          k.sync();
        },
        { name: "kt" },
      );
      // Epilogue per output: alpha, bias[col], activation, residual[row, col]; predicated store.
      for (let i = 0; i < PER; i++) {
        const row = k.let(row0.add(ty).add(16 * i), `row${i}`);
        for (let j = 0; j < PER; j++) {
          const col = col0.add(tx).add(16 * j);
          const ok = k.let(row.lt(M).and(col.lt(N)));
          let v: Expr<"f32"> = acc[i * PER + j];
          if (c.scale) v = v.mul(p.alpha as Expr<"f32">);
          if (c.bias) v = v.add(k.loadGlobal(gptr("bias"), col, { pred: ok })[0] as Expr<"f32">);
          if (c.activation === "gelu") v = gelu(v);
          if (c.activation === "geluTanh") v = geluTanh(v);
          if (c.residual)
            v = v.add(k.loadGlobal(gptr("residual"), at(baseR, row, int("ldr"), col), { pred: ok })[0] as Expr<"f32">);
          k.storeGlobal(gptr("c"), at(baseC, row, int("ldc"), col), [v], { pred: ok });
        }
      }
    },
  );
}
