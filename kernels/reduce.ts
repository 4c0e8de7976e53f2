// Reductions (sum, mean, max) in f32 over a contiguous axis, after the caller has viewed the tensor as
// [outer, len, inner]:
//   reduceRows     inner = 1: one CTA per row, threads stride the row, block reduction (shuffles).
//   reduceColumns  inner > 1: one thread per (outer, inner) output walks len; neighbouring threads
//                  read neighbouring columns, so every load is coalesced.

import { cast, defineKernel, type Expr, type KernelProgram, max, ptr, scalar } from "../compiler/tile/index.ts";
import { forRow, loadVec, type RowConfig, rowBase, rowDefaults, sumOf } from "./rows.ts";

export type ReduceOp = "sum" | "mean" | "max";

export function reduceRows(c: RowConfig & { op: ReduceOp }): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  return defineKernel(
    {
      name: `reduce_rows_${c.op}_${dtype}_${out}_v${vec}_w${warps}`,
      params: { x: ptr(dtype), y: ptr(out), rows: scalar("i32"), cols: scalar("i32") },
      warps,
      grid: (p) => [p.rows],
      doc: `y[r] = ${c.op} over x[r, :]`,
    },
    (k, p) => {
      const base = rowBase(k, p.cols);
      const isMax = c.op === "max";
      const acc = k.var("f32", isMax ? Number.NEGATIVE_INFINITY : 0, "acc");
      forRow(k, p.cols, vec, (col) => {
        const xs = loadVec(k, p.x, base, col, vec);
        k.assign(acc, isMax ? xs.reduce((a, v) => max(a, v), acc as Expr<"f32">) : acc.add(sumOf(xs)));
      });
      let r = k.blockReduce(acc, isMax ? "max" : "sum");
      if (c.op === "mean") r = r.div(cast(p.cols, "f32"));
      k.storeGlobal(p.y, k.blockIdx.x, [r], { pred: k.tid.eq(0) });
    },
  );
}

export function reduceColumns(c: { dtype: "bf16" | "f32"; out?: "bf16" | "f32"; op: ReduceOp; warps?: number }): KernelProgram {
  const warps = c.warps ?? 4;
  const out = c.out ?? c.dtype;
  return defineKernel(
    {
      name: `reduce_cols_${c.op}_${c.dtype}_${out}_w${warps}`,
      params: { x: ptr(c.dtype), y: ptr(out), outer: scalar("i32"), len: scalar("i32"), inner: scalar("i32") },
      warps,
      grid: (p) => [p.inner.ceilDiv(warps * 32), p.outer],
      doc: `y[o, i] = ${c.op} over x[o, :, i]`,
    },
    (k, p) => {
      const i = k.let(k.blockIdx.x.mul(k.threads).add(k.tid), "i");
      const ok = i.lt(p.inner);
      const base = k.let(k.wide(k.blockIdx.y).mul(k.wide(p.len)).mul(k.wide(p.inner)).add(k.wide(i)), "base");
      const isMax = c.op === "max";
      const acc = k.var("f32", isMax ? Number.NEGATIVE_INFINITY : 0, "acc");
      k.for(
        0,
        p.len,
        (r) => {
          const [x] = k.loadGlobal(p.x, base.add(k.wide(r).mul(k.wide(p.inner))), { pred: ok }) as Expr<"f32">[];
          k.assign(acc, isMax ? max(acc, x) : acc.add(x));
        },
        { name: "r" },
      );
      const r = c.op === "mean" ? acc.div(cast(p.len, "f32")) : acc;
      k.storeGlobal(p.y, k.wide(k.blockIdx.y).mul(k.wide(p.inner)).add(k.wide(i)), [r], { pred: ok });
    },
  );
}
