// GroupNorm forward on NC... tensors: x [N, C, S] (S = spatial size), groups G. Each (n, g) is one
// contiguous row of (C/G) * S elements, normalised like a LayerNorm row (two-pass f32 statistics,
// kernels/layernorm.ts rowStats); the affine weight and bias are per channel,
// channel = (row % G) * (C/G) + col / S. One CTA per row; S must be a multiple of vec so a vector
// never straddles two channels.

import {
  defineKernel,
  type Expr,
  type GlobalPtr,
  type KernelProgram,
  type ParamSpec,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";
import { rowStats } from "./layernorm.ts";
import { forRow, loadVec, rowBase, rowDefaults } from "./rows.ts";

export interface GroupNormConfig {
  dtype: "bf16" | "f32";
  out?: "bf16" | "f32";
  /** Elements per access; must divide the spatial size. */
  vec?: number;
  warps?: number;
  affine?: boolean;
}

export function groupNormForward(c: GroupNormConfig): KernelProgram {
  const { dtype, out, vec, warps } = rowDefaults(c);
  const affine = c.affine ?? true;
  const params: Record<string, ParamSpec> = { x: ptr(dtype), y: ptr(out) };
  if (affine) Object.assign(params, { w: ptr(dtype), b: ptr(dtype) });
  Object.assign(params, {
    rows: scalar("i32"),
    groups: scalar("i32"),
    channelsPerGroup: scalar("i32"),
    spatial: scalar("i32"),
    eps: scalar("f32"),
  });
  return defineKernel(
    {
      name: `groupnorm_fwd_${dtype}_${out}_v${vec}_w${warps}${affine ? "" : "_noaffine"}`,
      params,
      warps,
      grid: (p) => [p.rows as Expr<"i32">],
      doc: "y = groupNorm(x) on [N, C, spatial]: one CTA per (sample, group)",
    },
    (k, p) => {
      const int = (n: string) => p[n] as Expr<"i32">;
      const ptrOf = (n: string) => p[n] as GlobalPtr;
      const cols = k.let(int("channelsPerGroup").mul(int("spatial")), "cols");
      const base = rowBase(k, cols);
      const { mean, rstd } = rowStats(k, ptrOf("x"), base, cols, vec, p.eps as Expr<"f32">);
      const firstChannel = k.let(k.blockIdx.x.rem(int("groups")).mul(int("channelsPerGroup")), "firstChannel");
      forRow(k, cols, vec, (col) => {
        let ys = loadVec(k, ptrOf("x"), base, col, vec).map((v) => v.sub(mean).mul(rstd));
        if (affine) {
          const ch = firstChannel.add(col.div(int("spatial")));
          const [w] = k.loadGlobal(ptrOf("w"), ch) as Expr<"f32">[];
          const [b] = k.loadGlobal(ptrOf("b"), ch) as Expr<"f32">[];
          ys = ys.map((v) => v.mul(w).add(b));
        }
        k.storeGlobal(ptrOf("y"), base.add(k.wide(col)), ys);
      });
    },
  );
}
