// RMSNorm, the worked example of kernels/README.md: y = x * rsqrt(mean(x^2) + eps) * w over the last
// dim of [rows, cols]. One CTA per row; each thread strides over the row in 16-byte vectors, a block
// reduction gives the mean of squares, a second pass writes the output.

import { cast, defineKernel, type Expr, type KernelProgram, ptr, rsqrt, scalar } from "../compiler/tile/index.ts";
import { forRow, loadVec, sumOf } from "./rows.ts";

export function rmsNorm(c: { dtype: "bf16" | "f32"; warps?: number }): KernelProgram {
  const vec = c.dtype === "bf16" ? 8 : 4; // 16 bytes per access: cols must be a multiple of vec
  const warps = c.warps ?? 4;
  return defineKernel(
    {
      name: `rmsnorm_${c.dtype}_w${warps}`,
      params: { x: ptr(c.dtype), w: ptr(c.dtype), y: ptr(c.dtype), rows: scalar("i32"), cols: scalar("i32"), eps: scalar("f32") },
      warps,
      grid: (p) => [p.rows], // one CTA per row
      doc: "y = x * rsqrt(mean(x^2) + eps) * w over the last dim",
    },
    (k, p) => {
      const base = k.let(k.wide(k.blockIdx.x).mul(k.wide(p.cols)), "rowBase");
      // Pass 1: this thread's sum of squares, then the whole CTA's.
      const ss = k.var("f32", 0, "sumSq");
      forRow(k, p.cols, vec, (col) => {
        const xs = loadVec(k, p.x, base, col, vec);
        k.assign(ss, ss.add(sumOf(xs.map((v) => v.mul(v)))));
      });
      const scale = k.let(rsqrt(k.blockReduce(ss, "sum").div(cast(p.cols, "f32")).add(p.eps)), "scale");
      // Pass 2: normalise, weight, store (rounded to bf16 for bf16 tensors).
      forRow(k, p.cols, vec, (col) => {
        const xs = loadVec(k, p.x, base, col, vec);
        const ws = k.loadGlobal(p.w, col, { vec }) as Expr<"f32">[];
        k.storeGlobal(
          p.y,
          base.add(k.wide(col)),
          xs.map((v, i) => v.mul(scale).mul(ws[i])),
        );
      });
    },
  );
}
