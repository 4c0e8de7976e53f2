// GroupNorm backward (dx) on [N, C, S]: one CTA per (sample, group) row of (C/G) * S elements, the
// LayerNorm backward of that row with a per-channel weight (kernels/layernorm.ts, groupnorm.ts):
//   g = dy * w[channel], xhat = (x - mean) * rstd
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
// The statistics are recomputed in f32 (two passes, as the forward). S must be a multiple of vec so
// a vector never straddles two channels.

import {
  cast,
  defineKernel,
  type Expr,
  type GlobalPtr,
  type KernelProgram,
  type ParamSpec,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";
import type { GroupNormConfig } from "./groupnorm.ts";
import { rowStats } from "./layernorm.ts";
import { forRow, loadVec, rowBase, rowDefaults, sumOf } from "./rows.ts";

export function groupNormBackward(c: GroupNormConfig): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  const affine = c.affine ?? true;
  const params: Record<string, ParamSpec> = { x: ptr(dtype), dy: ptr(dtype), dx: ptr(out) };
  if (affine) params.w = ptr(dtype);
  Object.assign(params, {
    rows: scalar("i32"),
    groups: scalar("i32"),
    channelsPerGroup: scalar("i32"),
    spatial: scalar("i32"),
    eps: scalar("f32"),
  });
  return defineKernel(
    {
      name: `groupnorm_bwd_${dtype}_${out}_v${vec}_w${warps}${affine ? "" : "_noaffine"}`,
      params,
      warps,
      grid: (p) => [p.rows as Expr<"i32">],
      doc: "dx of groupNorm on [N, C, spatial]: one CTA per (sample, group)",
    },
    (k, p) => {
      const int = (n: string) => p[n] as Expr<"i32">;
      const ptrOf = (n: string) => p[n] as GlobalPtr;
      const cols = k.let(int("channelsPerGroup").mul(int("spatial")), "cols");
      const base = rowBase(k, cols);
      const { mean, rstd } = rowStats(k, ptrOf("x"), base, cols, vec, p.eps as Expr<"f32">);
      const firstChannel = k.let(k.blockIdx.x.rem(int("groups")).mul(int("channelsPerGroup")), "firstChannel");
      const terms = (col: Expr<"i32">) => {
        const xhat = loadVec(k, ptrOf("x"), base, col, vec).map((v) => v.sub(mean).mul(rstd));
        let g = loadVec(k, ptrOf("dy"), base, col, vec);
        if (affine) {
          const [w] = k.loadGlobal(ptrOf("w"), firstChannel.add(col.div(int("spatial")))) as Expr<"f32">[];
          g = g.map((v) => v.mul(w));
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
        k.storeGlobal(
          ptrOf("dx"),
          base.add(k.wide(col)),
          g.map((v, i) => v.sub(meanG).sub(xhat[i].mul(meanGX)).mul(rstd)),
        );
      });
    },
  );
}
