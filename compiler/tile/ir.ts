// The kernel program: what a kernel written in the kernel language builds. Plain data (declarations
// and a tree of statements); compiler/codegen renders it to PTX and compiler/tile/printer.ts prints it.
// Tile statements (copyTile, loadTile, mma, map, reduce, storeTile) stay whole here: the renderer
// expands them per fragment with the tables of layout.ts.

import type { SourceLoc } from "../ir/types.ts";
import type { Expr } from "./expr.ts";
import type { Swizzle, TileLayout } from "./layout.ts";
import type { ElemType, ScalarType } from "./types.ts";

export interface PtrParam {
  readonly kind: "ptr";
  readonly name: string;
  readonly dtype: ElemType;
}
export interface ScalarParam {
  readonly kind: "scalar";
  readonly name: string;
  readonly type: "i32" | "i64" | "f32";
}
export type ParamDecl = PtrParam | ScalarParam;

/** A staged, swizzled tile of shared memory: `stages` copies of rows x cols. */
export interface SharedTile {
  readonly kind: "sharedTile";
  readonly id: number;
  readonly name: string;
  readonly dtype: "bf16" | "f32";
  readonly rows: number;
  readonly cols: number;
  readonly stages: number;
  readonly swizzle: Swizzle;
  /** Byte offset in the kernel's shared memory (1024-aligned). */
  readonly offset: number;
  readonly stageBytes: number;
}

/** A plain shared array (reduction scratch, staging). */
export interface SharedArray {
  readonly kind: "sharedArray";
  readonly id: number;
  readonly name: string;
  readonly dtype: ElemType;
  readonly length: number;
  readonly offset: number;
}

/** A per-warp register tile of 16x16 blocks, fragments as mma.m16n8k16 wants (layout.ts). */
export interface RegTile {
  readonly kind: "regTile";
  readonly id: number;
  readonly name: string;
  readonly dtype: "bf16" | "f32";
  readonly rows: number;
  readonly cols: number;
  readonly layout: TileLayout;
}

/** One f32 per row (axis "row") or per column (axis "col") of a register tile of `layout`. */
export interface RegVec {
  readonly kind: "regVec";
  readonly id: number;
  readonly name: string;
  readonly axis: "row" | "col";
  readonly length: number;
  readonly layout: TileLayout;
}

export interface VarDecl {
  readonly id: number;
  readonly name: string;
  readonly type: ScalarType;
}

/**
 * A 2-D window of a global tensor: element (r, c) is at ptr + offset + r * rowStride + c * colStride;
 * reads outside rows x cols give 0 and writes there are dropped (predicated tails).
 */
export interface GlobalView {
  readonly ptr: string;
  readonly dtype: ElemType;
  readonly offset: Expr<"i64">;
  readonly rowStride: Expr<"i32">;
  /** 1, or 0 to repeat one value per row across the columns (rowStride 0 repeats a row: a bias). */
  readonly colStride: 0 | 1;
  readonly rows: Expr<"i32">;
  readonly cols: Expr<"i32">;
  /** Every row starts at an element offset that is a multiple of `align` (enables vector access). */
  readonly align: number;
  /**
   * Set for a view of a shared array (`k.sharedView`): the array's byte offset in the kernel's shared
   * memory; `ptr` is then the array's name. Maps load from it and storeTile writes to it (ld/st.shared).
   */
  readonly sharedOffset?: number;
}

export type MapOperand =
  | { readonly kind: "tile"; readonly tile: RegTile }
  | { readonly kind: "vec"; readonly vec: RegVec }
  | { readonly kind: "global"; readonly view: GlobalView };

interface At {
  readonly loc?: SourceLoc;
}

export type Stmt = At &
  (
    | { readonly kind: "let"; readonly dst: VarDecl; readonly value: Expr }
    | {
        readonly kind: "for";
        readonly iv: VarDecl;
        readonly start: Expr<"i32">;
        readonly end: Expr<"i32">;
        readonly step: Expr<"i32">;
        readonly unroll: boolean;
        readonly body: Stmt[];
      }
    | { readonly kind: "if"; readonly cond: Expr<"pred">; readonly thenBody: Stmt[]; readonly elseBody: Stmt[] }
    | { readonly kind: "sync" }
    | { readonly kind: "commitGroup" }
    | { readonly kind: "waitGroup"; readonly pending: number }
    | {
        readonly kind: "copyTile";
        readonly dst: SharedTile;
        readonly stage: Expr<"i32">;
        readonly src: GlobalView;
        readonly row0: Expr<"i32">;
        readonly col0: Expr<"i32">;
        /** Elements per copy: 8 (16 B cp.async), 2 (4 B cp.async) or 1 (ld.global + st.shared). */
        readonly vec: number;
      }
    | {
        readonly kind: "loadTile";
        readonly dst: RegTile;
        readonly src: SharedTile;
        readonly stage: Expr<"i32">;
        readonly row0: Expr<"i32">;
        readonly col0: Expr<"i32">;
        readonly transposed: boolean;
      }
    | { readonly kind: "mma"; readonly acc: RegTile; readonly a: RegTile; readonly b: RegTile }
    | {
        readonly kind: "map";
        readonly dst: RegTile | RegVec;
        readonly fn: Expr;
        readonly operands: readonly MapOperand[];
        /** Coordinates of the tile's (0, 0) in the global views it reads. */
        readonly origin: readonly [Expr<"i32">, Expr<"i32">];
      }
    | {
        readonly kind: "reduce";
        readonly dst: RegVec;
        readonly src: RegTile;
        readonly op: "max" | "sum";
        readonly accumulate: boolean;
      }
    | {
        readonly kind: "storeTile";
        readonly dst: GlobalView;
        readonly src: RegTile;
        readonly row0: Expr<"i32">;
        readonly col0: Expr<"i32">;
      }
    | {
        readonly kind: "loadGlobal";
        readonly dst: readonly VarDecl[];
        readonly ptr: string;
        readonly dtype: ElemType;
        readonly index: Expr<"i32"> | Expr<"i64">;
        readonly pred?: Expr<"pred">;
      }
    | {
        readonly kind: "storeGlobal";
        readonly ptr: string;
        readonly dtype: ElemType;
        readonly index: Expr<"i32"> | Expr<"i64">;
        readonly values: readonly Expr[];
        readonly pred?: Expr<"pred">;
      }
    | { readonly kind: "loadShared"; readonly dst: VarDecl; readonly src: SharedArray; readonly index: Expr<"i32"> }
    | {
        readonly kind: "storeShared";
        readonly dst: SharedArray;
        readonly index: Expr<"i32">;
        readonly value: Expr;
        readonly pred?: Expr<"pred">;
      }
    | {
        readonly kind: "shfl";
        readonly dst: VarDecl;
        readonly value: Expr;
        readonly mode: "bfly" | "down" | "up" | "idx";
        readonly lane: Expr<"i32">;
      }
  );

export type StmtKind = Stmt["kind"];

export interface KernelProgram {
  readonly name: string;
  readonly params: readonly ParamDecl[];
  readonly warps: number;
  /** CTAs per grid dimension, as expressions over the scalar params (evaluated on the host at launch). */
  readonly grid: readonly [Expr<"i32">, Expr<"i32">, Expr<"i32">];
  readonly sharedTiles: readonly SharedTile[];
  readonly sharedArrays: readonly SharedArray[];
  readonly sharedBytes: number;
  readonly regTiles: readonly RegTile[];
  readonly regVecs: readonly RegVec[];
  readonly vars: readonly VarDecl[];
  readonly body: readonly Stmt[];
  /** Where the kernel was defined. */
  readonly loc?: SourceLoc;
  /** What the kernel computes, one line (shown in the kernel table). */
  readonly doc?: string;
  /** `.minnctapersm`: CTAs that must fit on one SM (a register budget for ptxas). */
  readonly minCtasPerSm?: number;
}

export function threadsOf(k: KernelProgram): number {
  return k.warps * 32;
}

/** Registers a thread spends on a tile or vector (32-bit each; bf16 pairs pack). */
export function tileRegisters(t: RegTile): number {
  const elems = (t.rows * t.cols) / 32;
  return t.dtype === "bf16" ? elems / 2 : elems;
}

export function vecRegisters(v: RegVec): number {
  // Per 16-element block a thread touches 2 distinct rows/cols in one direction, 4 in the other.
  const perBlock = (v.layout === "row") === (v.axis === "row") ? 2 : 4;
  return (v.length / 16) * perBlock;
}
