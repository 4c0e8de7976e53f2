// Softmax over the last dim of [rows, cols], forward and backward; one CTA per row, f32 math.
//   forward:  y = exp(x - max) / sum(exp(x - max))            (three passes: max, sum, write)
//   backward: dx = y * (dy - sum(dy * y))                      (two passes: dot, write)

import { defineKernel, type Expr, exp, f32, type KernelProgram, max, ptr, scalar } from "../compiler/tile/index.ts";
import { forRow, loadVec, type RowConfig, rowBase, rowDefaults, sumOf } from "./rows.ts";

export function softmaxForward(c: RowConfig): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  return defineKernel(
    {
      name: `softmax_fwd_${dtype}_${out}_v${vec}_w${warps}`,
      params: { x: ptr(dtype), y: ptr(out), rows: scalar("i32"), cols: scalar("i32") },
      warps,
      grid: (p) => [p.rows],
      doc: "y = softmax(x) over the last dim, one CTA per row",
    },
    (k, p) => {
      const base = rowBase(k, p.cols);
      const m = k.var("f32", Number.NEGATIVE_INFINITY, "max");
      forRow(k, p.cols, vec, (c) =>
        k.assign(
          m,
          loadVec(k, p.x, base, c, vec).reduce((a, v) => max(a, v), m as Expr<"f32">),
        ),
      );
      const rowMax = k.let(k.blockReduce(m, "max"), "rowMax");
      const s = k.var("f32", 0, "sum");
      forRow(k, p.cols, vec, (c) => k.assign(s, s.add(sumOf(loadVec(k, p.x, base, c, vec).map((v) => exp(v.sub(rowMax)))))));
      const inv = k.let(f32(1).div(k.blockReduce(s, "sum")), "invSum");
      forRow(k, p.cols, vec, (c) => {
        const ys = loadVec(k, p.x, base, c, vec).map((v) => exp(v.sub(rowMax)).mul(inv));
        k.storeGlobal(p.y, base.add(k.wide(c)), ys);
      });
    },
  );
}

export function softmaxBackward(c: RowConfig): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  return defineKernel(
    {
      name: `softmax_bwd_${dtype}_${out}_v${vec}_w${warps}`,
      params: { y: ptr(dtype), dy: ptr(dtype), dx: ptr(out), rows: scalar("i32"), cols: scalar("i32") },
      warps,
      grid: (p) => [p.rows],
      doc: "dx = y * (dy - sum(dy * y)) over the last dim, one CTA per row",
    },
    (k, p) => {
      const base = rowBase(k, p.cols);
      const s = k.var("f32", 0, "dot");
      forRow(k, p.cols, vec, (c) => {
        const y = loadVec(k, p.y, base, c, vec);
        const dy = loadVec(k, p.dy, base, c, vec);
        k.assign(s, s.add(sumOf(y.map((v, i) => v.mul(dy[i])))));
      });
      const dot = k.let(k.blockReduce(s, "sum"), "dot");
      forRow(k, p.cols, vec, (c) => {
        const y = loadVec(k, p.y, base, c, vec);
        const dy = loadVec(k, p.dy, base, c, vec);
        k.storeGlobal(
          p.dx,
          base.add(k.wide(c)),
          y.map((v, i) => v.mul(dy[i].sub(dot))),
        );
      });
    },
  );
}
