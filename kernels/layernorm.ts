// LayerNorm over the last dim of a [rows, cols] tensor, forward and backward. One CTA per row; f32
// statistics from two passes (mean, then the mean of squared deviations: no E[x^2] - E[x]^2
// cancellation). bf16 or f32 in/out; weight and bias have the input's dtype.
//
//   forward:  y = (x - mean) * rstd * w + b,            rstd = 1 / sqrt(var + eps)
//   backward: g = dy * w, xhat = (x - mean) * rstd
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat))     (layerNormBackward, per row)
//             dw = sum_rows dy * xhat, db = sum_rows dy             (layerNormParamGrads: partial sums
//             over row chunks, finished by reduceColumns over the chunks)

import {
  cast,
  defineKernel,
  type Expr,
  type GlobalPtr,
  type KernelBuilder,
  type KernelProgram,
  min,
  type ParamSpec,
  ptr,
  rsqrt,
  scalar,
} from "../compiler/tile/index.ts";
import { forRow, loadVec, type RowConfig, rowBase, rowDefaults, sumOf } from "./rows.ts";

export interface LayerNormConfig extends RowConfig {
  affine?: boolean;
  /** Also write per-row mean and rstd (f32) for a backward pass. */
  saveStats?: boolean;
}

/** mean and rstd of the CTA's row (every thread gets both). */
export function rowStats(k: KernelBuilder, x: GlobalPtr, base: Expr<"i64">, cols: Expr<"i32">, vec: number, eps: Expr<"f32">) {
  const s = k.var("f32", 0, "sum");
  forRow(k, cols, vec, (c) => k.assign(s, s.add(sumOf(loadVec(k, x, base, c, vec)))));
  const n = cast(cols, "f32");
  const mean = k.let(k.blockReduce(s, "sum").div(n), "mean");
  const ss = k.var("f32", 0, "sumSq");
  forRow(k, cols, vec, (c) => {
    const d = loadVec(k, x, base, c, vec).map((v) => v.sub(mean));
    k.assign(ss, ss.add(sumOf(d.map((v) => v.mul(v)))));
  });
  const rstd = k.let(rsqrt(k.blockReduce(ss, "sum").div(n).add(eps)), "rstd");
  return { mean, rstd };
}

export function layerNormForward(c: LayerNormConfig): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  const affine = c.affine ?? true;
  const params: Record<string, ParamSpec> = { x: ptr(dtype), y: ptr(out) };
  if (affine) Object.assign(params, { w: ptr(dtype), b: ptr(dtype) });
  if (c.saveStats) Object.assign(params, { mean: ptr("f32"), rstd: ptr("f32") });
  Object.assign(params, { rows: scalar("i32"), cols: scalar("i32"), eps: scalar("f32") });
  return defineKernel(
    {
      name: `layernorm_fwd_${dtype}_${out}_v${vec}_w${warps}${affine ? "" : "_noaffine"}${c.saveStats ? "_stats" : ""}`,
      params,
      warps,
      grid: (p) => [p.rows as Expr<"i32">],
      doc: "y = layerNorm(x) over the last dim, one CTA per row",
    },
    (k, p) => {
      const ptrOf = (n: string) => p[n] as GlobalPtr;
      const cols = p.cols as Expr<"i32">;
      const base = rowBase(k, cols);
      const { mean, rstd } = rowStats(k, ptrOf("x"), base, cols, vec, p.eps as Expr<"f32">);
      if (c.saveStats) {
        const first = k.tid.eq(0);
        k.storeGlobal(ptrOf("mean"), k.blockIdx.x, [mean], { pred: first });
        k.storeGlobal(ptrOf("rstd"), k.blockIdx.x, [rstd], { pred: first });
      }
      forRow(k, cols, vec, (col) => {
        let ys = loadVec(k, ptrOf("x"), base, col, vec).map((v) => v.sub(mean).mul(rstd));
        if (affine) {
          const w = k.loadGlobal(ptrOf("w"), col, { vec }) as Expr<"f32">[];
          const b = k.loadGlobal(ptrOf("b"), col, { vec }) as Expr<"f32">[];
          ys = ys.map((v, i) => v.mul(w[i]).add(b[i]));
        }
        k.storeGlobal(ptrOf("y"), base.add(k.wide(col)), ys);
      });
    },
  );
}

/** dx of LayerNorm (recomputing the row statistics), and per-row mean/rstd for layerNormParamGrads. */
export function layerNormBackward(c: LayerNormConfig): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  const affine = c.affine ?? true;
  const params: Record<string, ParamSpec> = { x: ptr(dtype), dy: ptr(dtype), dx: ptr(out) };
  if (affine) params.w = ptr(dtype);
  Object.assign(params, { mean: ptr("f32"), rstd: ptr("f32"), rows: scalar("i32"), cols: scalar("i32"), eps: scalar("f32") });
  return defineKernel(
    {
      name: `layernorm_bwd_${dtype}_${out}_v${vec}_w${warps}${affine ? "" : "_noaffine"}`,
      params,
      warps,
      grid: (p) => [p.rows as Expr<"i32">],
      doc: "dx of layerNorm over the last dim; writes the row mean/rstd for the weight gradients",
    },
    (k, p) => {
      const ptrOf = (n: string) => p[n] as GlobalPtr;
      const cols = p.cols as Expr<"i32">;
      const base = rowBase(k, cols);
      const { mean, rstd } = rowStats(k, ptrOf("x"), base, cols, vec, p.eps as Expr<"f32">);
      const first = k.tid.eq(0);
      k.storeGlobal(ptrOf("mean"), k.blockIdx.x, [mean], { pred: first });
      k.storeGlobal(ptrOf("rstd"), k.blockIdx.x, [rstd], { pred: first });
      // g = dy * w and xhat for one vector of the row.
      const terms = (col: Expr<"i32">) => {
        const xhat = loadVec(k, ptrOf("x"), base, col, vec).map((v) => v.sub(mean).mul(rstd));
        let g = loadVec(k, ptrOf("dy"), base, col, vec);
        if (affine) {
          const w = k.loadGlobal(ptrOf("w"), col, { vec }) as Expr<"f32">[];
          g = g.map((v, i) => v.mul(w[i]));
        }
        return { xhat, g };
      };
      const sg = k.var("f32", 0, "sumG");
      const sgx = k.var("f32", 0, "sumGXhat");
      forRow(k, cols, vec, (col) => {
        const { xhat, g } = terms(col);
        k.assign(sg, sg.add(sumOf(g)));
        k.assign(sgx, sgx.add(sumOf(g.map((v, i) => v.mul(xhat[i])))));
      });
      const n = cast(cols, "f32");
      const meanG = k.let(k.blockReduce(sg, "sum").div(n), "meanG");
      const meanGX = k.let(k.blockReduce(sgx, "sum").div(n), "meanGXhat");
      forRow(k, cols, vec, (col) => {
        const { xhat, g } = terms(col);
        const dx = g.map((v, i) => v.sub(meanG).sub(xhat[i].mul(meanGX)).mul(rstd));
        k.storeGlobal(ptrOf("dx"), base.add(k.wide(col)), dx);
      });
    },
  );
}

/**
 * Partial weight/bias gradients: CTA (x, y) sums columns [x*threads, ...) over rows
 * [y*rowsPerChunk, ...) into dwPart[y, col], dbPart[y, col] (f32). Threads own consecutive columns,
 * so every row read is coalesced. Finish with reduceColumns over the chunk axis.
 */
export function layerNormParamGrads(c: { dtype: "bf16" | "f32"; warps?: number }): KernelProgram {
  const warps = c.warps ?? 4;
  return defineKernel(
    {
      name: `layernorm_param_grads_${c.dtype}_w${warps}`,
      params: {
        x: ptr(c.dtype),
        dy: ptr(c.dtype),
        mean: ptr("f32"),
        rstd: ptr("f32"),
        dwPart: ptr("f32"),
        dbPart: ptr("f32"),
        rows: scalar("i32"),
        cols: scalar("i32"),
        rowsPerChunk: scalar("i32"),
      },
      warps,
      grid: (p) => [p.cols.ceilDiv(warps * 32), p.rows.add(p.rowsPerChunk).sub(1).div(p.rowsPerChunk)],
      doc: "per-chunk column sums of dy * xhat and dy (LayerNorm weight/bias gradients)",
    },
    (k, p) => {
      const col = k.let(k.blockIdx.x.mul(k.threads).add(k.tid), "col");
      const r0 = k.let(k.blockIdx.y.mul(p.rowsPerChunk), "r0");
      const r1 = k.let(r0.add(p.rowsPerChunk), "r1");
      const dw = k.var("f32", 0, "dw");
      const db = k.var("f32", 0, "db");
      const inCol = col.lt(p.cols);
      k.for(
        r0,
        min(p.rows, r1),
        (r) => {
          const at = k.wide(r).mul(k.wide(p.cols)).add(k.wide(col));
          const [x] = k.loadGlobal(p.x, at, { pred: inCol }) as Expr<"f32">[];
          const [dy] = k.loadGlobal(p.dy, at, { pred: inCol }) as Expr<"f32">[];
          const [mean] = k.loadGlobal(p.mean, r) as Expr<"f32">[];
          const [rstd] = k.loadGlobal(p.rstd, r) as Expr<"f32">[];
          k.assign(dw, dw.add(dy.mul(x.sub(mean).mul(rstd))));
          k.assign(db, db.add(dy));
        },
        { name: "r" },
      );
      const out = k.wide(k.blockIdx.y).mul(k.wide(p.cols)).add(k.wide(col));
      k.storeGlobal(p.dwPart, out, [dw], { pred: inCol });
      k.storeGlobal(p.dbPart, out, [db], { pred: inCol });
    },
  );
}
