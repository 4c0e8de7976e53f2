// What the statement renderers share: the writer, the expression renderer, register names of tiles
// and vectors, and leaves only the renderer knows (shared base, lane decomposition, param pointers).

import { Expr, paramRef } from "../tile/expr.ts";
import type { KernelProgram, RegTile, RegVec, SharedTile } from "../tile/ir.ts";
import type { PtxWriter } from "./ptx-writer.ts";
import type { ExprRenderer } from "./render-expr.ts";

export interface RenderContext {
  readonly program: KernelProgram;
  readonly w: PtxWriter;
  readonly x: ExprRenderer;
  /** The value of a variable assigned exactly once (a `k.let`), for alignment facts. */
  readonly letValue: (id: number) => Expr | undefined;
}

/** Renderer-internal special registers, computed once at entry. */
export type InternalSpecial = "smem" | "lane.g" | "lane.t2";

export function internal(name: InternalSpecial): Expr<"i32"> {
  return new Expr("special", "i32", [], name);
}

export const LANE = new Expr<"i32">("special", "i32", [], "laneid");
export const TID = new Expr<"i32">("special", "i32", [], "tid.x");

/** Global address of element `index` of pointer param `ptr`. */
export function globalAddress(ptr: string, index: Expr<"i64">, elemBytes: number): Expr<"i64"> {
  return paramRef(ptr, "i64").add(index.mul(elemBytes));
}

export function tileReg(t: RegTile, i: number): string {
  return `%q${t.id}_${i}`;
}

export function vecReg(v: RegVec, i: number): string {
  return `%w${v.id}_${i}`;
}

/** Shared address (32-bit) of a tile's stage. */
export function stageBase(t: SharedTile, stage: Expr<"i32">): Expr<"i32"> {
  return internal("smem").add(t.offset).add(stage.mul(t.stageBytes));
}

/** Byte offset of (row, byte-in-row) inside a swizzled tile stage; see layout.ts swizzledOffset. */
export function swizzled(t: SharedTile, row: Expr<"i32">, byteInRow: Expr<"i32">, chunkAligned: boolean): Expr<"i32"> {
  const s = t.swizzle;
  let chunk = byteInRow.shr(4);
  if (s.mask) chunk = chunk.xor(row.shr(Math.log2(s.rowsPerLine)).and(s.mask));
  const base = row.mul(s.rowBytes).add(chunk.shl(4));
  return chunkAligned ? base : base.add(byteInRow.and(15));
}

export function isZero(e: Expr): boolean {
  return e.op === "const" && e.value === 0;
}

/** The largest power of two that provably divides e (1 when nothing is known); looks through lets. */
export function knownMultiple(e: Expr, letValue?: (id: number) => Expr | undefined): number {
  const km = (x: Expr) => knownMultiple(x, letValue);
  const cap = 1 << 30;
  switch (e.op) {
    case "const": {
      const n = Math.abs(e.value as number);
      if (n === 0) return cap;
      return n & -n;
    }
    case "var": {
      const v = letValue?.(e.value as number);
      return v ? km(v) : 1;
    }
    case "mul":
      return Math.min(km(e.args[0]) * km(e.args[1]), cap);
    case "shl":
      return e.args[1].op === "const" ? Math.min(km(e.args[0]) * 2 ** (e.args[1].value as number), cap) : 1;
    case "add":
    case "sub":
      return Math.min(km(e.args[0]), km(e.args[1]));
    case "cast":
      return km(e.args[0]);
    default:
      return 1;
  }
}
