// Shared pieces of the row-wise kernels (norms, softmax, row reductions): one CTA per row, each
// thread striding over the row in vectors of `vec` elements, block reductions in f32.

import { UserError } from "../compiler/ir/errors.ts";
import type { Expr, GlobalPtr, KernelBuilder } from "../compiler/tile/index.ts";

export interface RowConfig {
  /** Element type of the row inputs and of the outputs (f32 math in between). */
  dtype: "bf16" | "f32";
  out?: "bf16" | "f32";
  /** Elements per load/store: cols must be a multiple (8 bf16 or 4 f32 make 16-byte accesses). */
  vec?: number;
  warps?: number;
}

export function rowDefaults(c: RowConfig): Required<RowConfig> {
  const vec = c.vec ?? (c.dtype === "bf16" ? 8 : 4);
  const warps = c.warps ?? 4;
  if (![1, 2, 4, 8].includes(vec) || (c.dtype === "f32" && vec > 4))
    throw new UserError(`row kernel: vec ${vec} is not a 16-byte-or-less vector of ${c.dtype}`);
  return { dtype: c.dtype, out: c.out ?? c.dtype, vec, warps };
}

/** The row's first element (i64) for CTA blockIdx.x. */
export function rowBase(k: KernelBuilder, cols: Expr<"i32">): Expr<"i64"> {
  return k.let(k.wide(k.blockIdx.x).mul(k.wide(cols)), "rowBase");
}

/** Calls body for each vector of the row this thread owns (cols must be a multiple of vec). */
export function forRow(k: KernelBuilder, cols: Expr<"i32">, vec: number, body: (col: Expr<"i32">) => void): void {
  k.for(k.tid.mul(vec), cols, body, { step: k.threads * vec, name: "col" });
}

export function loadVec(k: KernelBuilder, p: GlobalPtr, base: Expr<"i64">, col: Expr<"i32">, vec: number): Expr<"f32">[] {
  return k.loadGlobal(p, base.add(k.wide(col)), { vec }) as Expr<"f32">[];
}

/** Sum of a list of f32 expressions (a balanced tree keeps the dependency chains short). */
export function sumOf(xs: readonly Expr<"f32">[]): Expr<"f32"> {
  if (xs.length === 1) return xs[0];
  const h = xs.length >> 1;
  return sumOf(xs.slice(0, h)).add(sumOf(xs.slice(h)));
}
