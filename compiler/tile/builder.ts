// The kernel language: `defineKernel(spec, body)` runs `body` with a KernelBuilder `k` whose methods
// append statements to a KernelProgram (ir.ts). Every statement records the author's source line.
// Tile mode: shared tiles, register tiles, copyTile/loadTile/mma/map/reduce/storeTile (one warp owns
// each register tile). Scalar mode: each thread computes elements with loadGlobal/storeGlobal,
// warp shuffles and block reductions. Both mix freely in one kernel.

import { UserError } from "../ir/errors.ts";
import { formatLoc } from "../ir/types.ts";
import { cast, constant, Expr, i32, max, type Operand, paramRef, special } from "./expr.ts";
import type { GlobalView, KernelProgram, ParamDecl, RegTile, RegVec, SharedArray, SharedTile, Stmt, VarDecl } from "./ir.ts";
import { swizzleFor, type TileLayout } from "./layout.ts";
import { kernelSourceLocation } from "./location.ts";
import { MapContext } from "./map-context.ts";
import { type ElemType, elemBytes, type ScalarType, scalarOf } from "./types.ts";

export interface PtrSpec {
  readonly kind: "ptr";
  readonly dtype: ElemType;
}
export interface ScalarSpec<T extends "i32" | "i64" | "f32" = "i32" | "i64" | "f32"> {
  readonly kind: "scalar";
  readonly type: T;
}
export type ParamSpec = PtrSpec | ScalarSpec;

export const ptr = (dtype: ElemType): PtrSpec => ({ kind: "ptr", dtype });
export const scalar = <T extends "i32" | "i64" | "f32">(type: T): ScalarSpec<T> => ({ kind: "scalar", type });

/** The value a param spec gives the kernel body (distributes over unions for dynamic param sets). */
export type ParamValue<S> = S extends PtrSpec ? GlobalPtr : S extends ScalarSpec<infer T> ? Expr<T> : never;
export type ParamValues<P extends Record<string, ParamSpec>> = { [K in keyof P]: ParamValue<P[K]> };

/**
 * Inside the expressions of a view given to `copyTile` or `storeTile`: the tile row of the element
 * being copied (the destination shared tile's row) or stored (the source register tile's row). A view
 * whose offset depends on it gathers rows from computed addresses (each row still contiguous, so a
 * copy stays 16-byte cp.async): `offset: rowStart(tileRow)` with `rowStride: 0`, and `rows:
 * select(ok(tileRow), 2**30, -2**30)` to zero-fill (copy) or drop (store) a row. In `k.map` it is the
 * element's row in the destination tile, as `m.row` without the origin.
 */
export const tileRow: Expr<"i32"> = new Expr("row", "i32");

/** Static shared memory per CTA without opting in to dynamic shared memory (sm_80). */
export const STATIC_SHARED_LIMIT = 48 * 1024;

/** A global pointer parameter. */
export class GlobalPtr {
  constructor(
    readonly name: string,
    readonly dtype: ElemType,
  ) {}

  /** A 2-D window (see GlobalView): rows x cols from `offset` with the given strides, in elements. */
  view(o: {
    rows: Operand<"i32">;
    cols: Operand<"i32">;
    rowStride: Operand<"i32">;
    colStride?: 0 | 1;
    offset?: Operand<"i64">;
    align?: number;
  }): GlobalView {
    const lift = (v: Operand<"i32">) => (typeof v === "number" ? i32(v) : v);
    return {
      ptr: this.name,
      dtype: this.dtype,
      offset: typeof o.offset === "number" ? constant(o.offset, "i64") : (o.offset ?? constant(0, "i64")),
      rowStride: lift(o.rowStride),
      colStride: o.colStride ?? 1,
      rows: lift(o.rows),
      cols: lift(o.cols),
      align: o.align ?? 1,
    };
  }
}

export interface KernelSpec<P extends Record<string, ParamSpec>> {
  /** A PTX identifier: letters, digits, _ and $. */
  readonly name: string;
  readonly params: P;
  /** Warps per CTA (the block is 1-D: warps * 32 threads). */
  readonly warps: number;
  /** CTAs along x, y, z as expressions of the scalar params. */
  readonly grid: (p: ParamValues<P>) => readonly Operand<"i32">[];
  readonly doc?: string;
  /**
   * CTAs that must fit on one SM at once (`.minnctapersm`, as CUDA's __launch_bounds__): without it
   * ptxas may aim at a higher occupancy and spill; with it, registers up to 64K / (this x threads).
   */
  readonly minCtasPerSm?: number;
}

export function defineKernel<P extends Record<string, ParamSpec>>(
  spec: KernelSpec<P>,
  body: (k: KernelBuilder, p: ParamValues<P>) => void,
): KernelProgram {
  const loc = kernelSourceLocation();
  const where = loc ? formatLoc(loc) : undefined;
  if (!/^[A-Za-z_][A-Za-z0-9_$]*$/.test(spec.name))
    throw new UserError(`kernel name '${spec.name}' is not a PTX identifier`, where);
  if (!Number.isInteger(spec.warps) || spec.warps < 1 || spec.warps > 32) {
    throw new UserError(`kernel ${spec.name}: warps must be 1..32, got ${spec.warps}`, where);
  }
  const params: ParamDecl[] = [];
  const values: Record<string, GlobalPtr | Expr> = {};
  for (const [name, p] of Object.entries(spec.params)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UserError(`kernel ${spec.name}: bad param name '${name}'`, where);
    if (p.kind === "ptr") {
      params.push({ kind: "ptr", name, dtype: p.dtype });
      values[name] = new GlobalPtr(name, p.dtype);
    } else {
      params.push({ kind: "scalar", name, type: p.type });
      values[name] = paramRef(name, p.type);
    }
  }
  const pv = values as ParamValues<P>;
  const g = spec.grid(pv).map((d) => (typeof d === "number" ? i32(d) : d));
  while (g.length < 3) g.push(i32(1));
  const k = new KernelBuilder(spec.name, spec.warps);
  body(k, pv);
  return {
    name: spec.name,
    params,
    warps: spec.warps,
    grid: [g[0], g[1], g[2]],
    sharedTiles: k.sharedTiles,
    sharedArrays: k.sharedArrays,
    sharedBytes: k.sharedTop,
    regTiles: k.regTiles,
    regVecs: k.regVecs,
    vars: k.vars,
    body: k.root,
    loc,
    doc: spec.doc,
    ...(spec.minCtasPerSm !== undefined ? { minCtasPerSm: spec.minCtasPerSm } : {}),
  };
}

type ReduceOp = "sum" | "max";

export class KernelBuilder {
  readonly root: Stmt[] = [];
  private readonly blocks: Stmt[][] = [this.root];
  readonly sharedTiles: SharedTile[] = [];
  readonly sharedArrays: SharedArray[] = [];
  readonly regTiles: RegTile[] = [];
  readonly regVecs: RegVec[] = [];
  readonly vars: VarDecl[] = [];
  sharedTop = 0;
  private ids = 0;

  /** Threads per CTA. */
  readonly threads: number;
  readonly tid = special("tid.x");
  readonly lane = special("laneid");
  /** Warp index in the CTA (tid / 32). */
  readonly warp: Expr<"i32">;
  readonly blockIdx = { x: special("ctaid.x"), y: special("ctaid.y"), z: special("ctaid.z") };
  readonly gridDim = { x: special("nctaid.x"), y: special("nctaid.y"), z: special("nctaid.z") };

  constructor(
    readonly name: string,
    readonly warps: number,
  ) {
    this.threads = warps * 32;
    this.warp = this.tid.shr(5);
  }

  // ---- plumbing ----------------------------------------------------------------------------------

  private push(s: Stmt): void {
    const loc = kernelSourceLocation();
    this.blocks[this.blocks.length - 1].push(loc ? { ...s, loc } : s);
  }

  fail(message: string): never {
    const loc = kernelSourceLocation();
    throw new UserError(`kernel ${this.name}: ${message}`, loc ? formatLoc(loc) : undefined);
  }

  private declare(type: ScalarType, name?: string): VarDecl {
    const v = { id: this.vars.length, name: name ?? `v${this.vars.length}`, type };
    this.vars.push(v);
    return v;
  }

  private ref<T extends ScalarType>(v: VarDecl): Expr<T> {
    return new Expr("var", v.type as T, [], v.id);
  }

  private nested(fn: () => void): Stmt[] {
    const block: Stmt[] = [];
    this.blocks.push(block);
    try {
      fn();
    } finally {
      this.blocks.pop();
    }
    return block;
  }

  // ---- scalars and control flow ------------------------------------------------------------------

  /** Evaluates `value` here into a register; the result does not change when variables do later. */
  let<T extends ScalarType>(value: Expr<T>, name?: string): Expr<T> {
    const v = this.declare(value.type, name);
    this.push({ kind: "let", dst: v, value });
    return this.ref(v);
  }

  /** A mutable variable, assigned with `k.assign`. */
  var<T extends ScalarType>(type: T, init: Operand<T>, name?: string): Expr<T> {
    const v = this.declare(type, name);
    this.push({ kind: "let", dst: v, value: typeof init === "number" ? constant(init, type) : init });
    return this.ref(v);
  }

  assign<T extends ScalarType>(v: Expr<T>, value: Operand<T>): void {
    if (v.op !== "var") this.fail("assign: the target is not a variable (use k.var)");
    const decl = this.vars[v.value as number];
    const e = typeof value === "number" ? constant(value, v.type) : value;
    if (e.type !== v.type) this.fail(`assign: ${e.type} value to a ${v.type} variable`);
    this.push({ kind: "let", dst: decl, value: e });
  }

  /** for (iv = start; iv < end; iv += step). `unroll` needs constant bounds; the renderer repeats the body. */
  for(
    start: Operand<"i32">,
    end: Operand<"i32">,
    body: (iv: Expr<"i32">) => void,
    o: { step?: Operand<"i32">; unroll?: boolean; name?: string } = {},
  ): void {
    const lift = (x: Operand<"i32">) => (typeof x === "number" ? i32(x) : x);
    const [s, e, st] = [lift(start), lift(end), lift(o.step ?? 1)];
    if (o.unroll && !(s.op === "const" && e.op === "const" && st.op === "const")) this.fail("for: unroll needs constant bounds");
    if (st.op === "const" && (st.value as number) <= 0) this.fail("for: step must be positive");
    const iv = this.declare("i32", o.name);
    const block = this.nested(() => body(this.ref(iv)));
    this.push({ kind: "for", iv, start: s, end: e, step: st, unroll: o.unroll ?? false, body: block });
  }

  if(cond: Expr<"pred">, then: () => void, otherwise?: () => void): void {
    const t = this.nested(then);
    const e = otherwise ? this.nested(otherwise) : [];
    this.push({ kind: "if", cond, thenBody: t, elseBody: e });
  }

  /** bar.sync: every thread of the CTA waits here; shared memory written before is visible after. */
  sync(): void {
    this.push({ kind: "sync" });
  }

  // ---- shared memory -----------------------------------------------------------------------------

  private allocShared(bytes: number, align: number): number {
    const off = Math.ceil(this.sharedTop / align) * align;
    this.sharedTop = off + bytes;
    if (this.sharedTop > STATIC_SHARED_LIMIT) {
      this.fail(`shared memory ${this.sharedTop} B exceeds the ${STATIC_SHARED_LIMIT} B static limit of sm_80`);
    }
    return off;
  }

  /** A swizzled shared tile with `stages` buffers (a multi-stage cp.async pipeline). */
  sharedTile(
    name: string,
    dtype: "bf16" | "f32",
    rows: number,
    cols: number,
    o: { stages?: number; swizzle?: boolean } = {},
  ): SharedTile {
    const rowBytes = cols * elemBytes(dtype);
    if (rows < 1 || rowBytes % 16 !== 0)
      this.fail(`shared tile ${name}: rows must be whole 16-byte chunks (cols ${cols} ${dtype})`);
    const stages = o.stages ?? 1;
    const stageBytes = Math.ceil((rows * rowBytes) / 128) * 128;
    const t: SharedTile = {
      kind: "sharedTile",
      id: this.ids++,
      name,
      dtype,
      rows,
      cols,
      stages,
      swizzle: swizzleFor(rowBytes, o.swizzle ?? true),
      offset: this.allocShared(stageBytes * stages, 128),
      stageBytes,
    };
    this.sharedTiles.push(t);
    return t;
  }

  sharedArray(name: string, dtype: ElemType, length: number): SharedArray {
    const a: SharedArray = {
      kind: "sharedArray",
      id: this.ids++,
      name,
      dtype,
      length,
      offset: this.allocShared(length * elemBytes(dtype), 16),
    };
    this.sharedArrays.push(a);
    return a;
  }

  /**
   * A 2-D view of an f32 shared array (element (r, c) at offset + r * rowStride + c * colStride): maps
   * read it with `m.load` and `storeTile` writes a register tile into it (ld/st.shared), e.g. to stage a
   * tile for other lanes, or a small table every element reads. Not a copyTile source.
   */
  sharedView(
    a: SharedArray,
    o: {
      rows: Operand<"i32">;
      cols: Operand<"i32">;
      rowStride: Operand<"i32">;
      colStride?: 0 | 1;
      offset?: Operand<"i64">;
      align?: number;
    },
  ): GlobalView {
    if (a.dtype !== "f32") this.fail(`sharedView: ${a.name} is ${a.dtype}; shared views are f32`);
    const lift = (v: Operand<"i32">) => (typeof v === "number" ? i32(v) : v);
    return {
      ptr: a.name,
      dtype: "f32",
      offset: typeof o.offset === "number" ? constant(o.offset, "i64") : (o.offset ?? constant(0, "i64")),
      rowStride: lift(o.rowStride),
      colStride: o.colStride ?? 1,
      rows: lift(o.rows),
      cols: lift(o.cols),
      align: o.align ?? 1,
      sharedOffset: a.offset,
    };
  }

  loadShared(src: SharedArray, index: Operand<"i32">): Expr<"f32" | "i32"> {
    const dst = this.declare(scalarOf(src.dtype));
    this.push({ kind: "loadShared", dst, src, index: typeof index === "number" ? i32(index) : index });
    return this.ref(dst);
  }

  storeShared(dst: SharedArray, index: Operand<"i32">, value: Expr, o: { pred?: Expr<"pred"> } = {}): void {
    if (value.type !== scalarOf(dst.dtype)) this.fail(`storeShared: ${value.type} value into ${dst.dtype} array ${dst.name}`);
    this.push({ kind: "storeShared", dst, index: typeof index === "number" ? i32(index) : index, value, pred: o.pred });
  }

  // ---- tile mode ---------------------------------------------------------------------------------

  /** A per-warp register tile; rows and cols are multiples of 16. */
  regTile(name: string, dtype: "bf16" | "f32", rows: number, cols: number, layout: TileLayout = "row"): RegTile {
    if (rows % 16 || cols % 16 || rows < 16 || cols < 16)
      this.fail(`register tile ${name}: ${rows}x${cols} is not made of 16x16 blocks`);
    if (dtype === "f32" && layout !== "row") this.fail(`register tile ${name}: f32 tiles use the row (accumulator) layout`);
    const t: RegTile = { kind: "regTile", id: this.ids++, name, dtype, rows, cols, layout };
    this.regTiles.push(t);
    return t;
  }

  /** One f32 per row of `tile` (row max, row sum, ...). */
  rowVec(name: string, tile: RegTile): RegVec {
    return this.vec(name, "row", tile.rows, tile.layout);
  }

  /** One f32 per column of `tile`. */
  colVec(name: string, tile: RegTile): RegVec {
    return this.vec(name, "col", tile.cols, tile.layout);
  }

  private vec(name: string, axis: "row" | "col", length: number, layout: TileLayout): RegVec {
    const v: RegVec = { kind: "regVec", id: this.ids++, name, axis, length, layout };
    this.regVecs.push(v);
    return v;
  }

  /**
   * The whole CTA copies the dst tile's rows x cols from `src` at (row0, col0) into stage `stage`;
   * outside the view it writes zeros. `vec` elements per copy: 16-byte cp.async when rows are
   * 16-byte aligned, 4-byte cp.async, else synchronous element copies. The view's expressions may
   * use `tileRow` (gathered rows, see there).
   */
  copyTile(
    dst: SharedTile,
    src: GlobalView,
    row0: Operand<"i32">,
    col0: Operand<"i32">,
    o: { stage?: Operand<"i32">; vec?: number } = {},
  ): void {
    if (src.sharedOffset !== undefined) this.fail(`copyTile: the source ${src.ptr} is a shared view (copies read global memory)`);
    if (src.dtype !== dst.dtype) this.fail(`copyTile: ${src.dtype} view into ${dst.dtype} tile ${dst.name}`);
    if (src.colStride !== 1) this.fail("copyTile: the source view must have unit column stride");
    const eb = elemBytes(dst.dtype);
    const vec = o.vec ?? [16 / eb, 4 / eb, 1].find((v) => Number.isInteger(v) && src.align % v === 0)!;
    const bytes = vec * eb;
    if (!(bytes === 16 || bytes === 8 || bytes === 4 || vec === 1))
      this.fail(`copyTile: ${vec} x ${dst.dtype} is not a copy size`);
    if (src.align % vec !== 0) this.fail(`copyTile: vec ${vec} needs rows aligned to ${vec} elements (view align ${src.align})`);
    if (dst.cols % vec !== 0) this.fail(`copyTile: vec ${vec} does not divide the tile width ${dst.cols}`);
    const lift = (x: Operand<"i32">) => (typeof x === "number" ? i32(x) : x);
    this.push({ kind: "copyTile", dst, stage: lift(o.stage ?? 0), src, row0: lift(row0), col0: lift(col0), vec });
  }

  /** cp.async.commit_group: the copies issued since the last commit form one group. */
  commitGroup(): void {
    this.push({ kind: "commitGroup" });
  }

  /** cp.async.wait_group n: wait until at most n of this thread's committed groups are in flight. */
  waitGroup(pending: number): void {
    this.push({ kind: "waitGroup", pending });
  }

  /**
   * ldmatrix: this warp loads dst from shared tile `src` at (row0, col0) of stage `stage`.
   * (row0, col0) are src coordinates. `transposed`: src holds the transpose, so dst element (r, c) is
   * src (row0 + c, col0 + r) (a K x M stored A loads as an M x K operand).
   */
  loadTile(
    dst: RegTile,
    src: SharedTile,
    o: { row0?: Operand<"i32">; col0?: Operand<"i32">; stage?: Operand<"i32">; transposed?: boolean } = {},
  ): void {
    if (dst.dtype !== "bf16" || src.dtype !== "bf16") this.fail("loadTile: ldmatrix loads bf16 tiles");
    const tr = o.transposed ?? false;
    const [r, c] = tr ? [dst.cols, dst.rows] : [dst.rows, dst.cols];
    const lift = (x: Operand<"i32">) => (typeof x === "number" ? i32(x) : x);
    const row0 = lift(o.row0 ?? 0);
    const col0 = lift(o.col0 ?? 0);
    if (
      row0.op === "const" &&
      col0.op === "const" &&
      ((row0.value as number) + r > src.rows || (col0.value as number) + c > src.cols)
    ) {
      this.fail(`loadTile: ${dst.name} at (${row0.value}, ${col0.value}) overruns ${src.name} (${src.rows}x${src.cols})`);
    }
    this.push({ kind: "loadTile", dst, src, stage: lift(o.stage ?? 0), row0, col0, transposed: tr });
  }

  /**
   * acc += a * b on tensor cores (m16n8k16, bf16 in, f32 accumulate). a: M x K row layout; b: K x N
   * col layout (A.B) or N x K row layout (A.B^T).
   */
  mma(acc: RegTile, a: RegTile, b: RegTile): void {
    if (acc.dtype !== "f32" || a.dtype !== "bf16" || b.dtype !== "bf16") this.fail("mma: bf16 operands, f32 accumulator");
    if (a.layout !== "row") this.fail(`mma: A operand ${a.name} must use the row layout`);
    const [bk, bn] = b.layout === "col" ? [b.rows, b.cols] : [b.cols, b.rows];
    if (a.rows !== acc.rows || bn !== acc.cols || a.cols !== bk) {
      this.fail(
        `mma: shapes ${acc.rows}x${acc.cols} += ${a.rows}x${a.cols} . ${b.layout === "col" ? `${b.rows}x${b.cols}` : `(${b.rows}x${b.cols})^T`}`,
      );
    }
    this.push({ kind: "mma", acc, a, b });
  }

  /**
   * dst = fn(ctx) for every element this warp holds. `origin` places the tile in the global views
   * the function loads (and offsets ctx.row / ctx.col). A bf16 destination rounds to nearest even.
   */
  map(
    dst: RegTile | RegVec,
    fn: (m: MapContext) => Expr<"f32"> | number,
    o: { origin?: readonly [Operand<"i32">, Operand<"i32">] } = {},
  ): void {
    const lift = (x: Operand<"i32">) => (typeof x === "number" ? i32(x) : x);
    const origin = [lift(o.origin?.[0] ?? 0), lift(o.origin?.[1] ?? 0)] as const;
    const loc = kernelSourceLocation();
    const ctx = new MapContext(dst, origin, loc ? formatLoc(loc) : undefined);
    const r = fn(ctx);
    const value = typeof r === "number" ? constant(r, "f32") : r;
    if (value.type !== "f32") this.fail(`map: the function returns ${value.type}, expected f32`);
    this.push({ kind: "map", dst, fn: value, operands: ctx.operands, origin });
  }

  fill(dst: RegTile | RegVec, value: number): void {
    this.map(dst, () => value);
  }

  /** dst[row] = max (or sum) over the row of src; with accumulate, combined with dst's value. */
  rowReduce(dst: RegVec, src: RegTile, op: ReduceOp, o: { accumulate?: boolean } = {}): void {
    if (dst.axis !== "row" || dst.length !== src.rows || dst.layout !== src.layout || src.layout !== "row") {
      this.fail(`rowReduce: ${dst.name} is not a row vector of the row-layout tile ${src.name}`);
    }
    this.push({ kind: "reduce", dst, src, op, accumulate: o.accumulate ?? false });
  }

  /**
   * Writes src (rounded to the view's dtype) at (row0, col0) of dst; elements outside are dropped.
   * dst may be a shared view (f32); its expressions may use `tileRow` (gathered rows).
   */
  storeTile(dst: GlobalView, src: RegTile, row0: Operand<"i32">, col0: Operand<"i32">): void {
    if (dst.dtype === "i32") this.fail("storeTile: tiles store to bf16 or f32");
    const lift = (x: Operand<"i32">) => (typeof x === "number" ? i32(x) : x);
    this.push({ kind: "storeTile", dst, src, row0: lift(row0), col0: lift(col0) });
  }

  // ---- scalar mode -------------------------------------------------------------------------------

  /**
   * Loads `vec` consecutive elements from ptr[index] as vector loads of up to 16 bytes (index must be a
   * multiple of the piece size). bf16 widens to f32. With `pred` false: zeros.
   */
  loadGlobal(
    p: GlobalPtr,
    index: Expr<"i32"> | Expr<"i64">,
    o: { vec?: number; pred?: Expr<"pred"> } = {},
  ): Expr<"f32" | "i32">[] {
    const vec = o.vec ?? 1;
    this.checkVec(vec, p.dtype);
    const dst = Array.from({ length: vec }, () => this.declare(scalarOf(p.dtype)));
    this.push({ kind: "loadGlobal", dst, ptr: p.name, dtype: p.dtype, index, pred: o.pred });
    return dst.map((d) => this.ref(d));
  }

  /** Stores values to ptr[index ..] (rounding to bf16 for bf16 pointers); skipped where `pred` is false. */
  storeGlobal(p: GlobalPtr, index: Expr<"i32"> | Expr<"i64">, values: readonly Expr[], o: { pred?: Expr<"pred"> } = {}): void {
    this.checkVec(values.length, p.dtype);
    for (const v of values)
      if (v.type !== scalarOf(p.dtype)) this.fail(`storeGlobal: ${v.type} value to ${p.dtype} pointer ${p.name}`);
    this.push({ kind: "storeGlobal", ptr: p.name, dtype: p.dtype, index, values, pred: o.pred });
  }

  private checkVec(vec: number, dtype: ElemType): void {
    const bytes = vec * elemBytes(dtype);
    if (!(vec === 1 || bytes === 4 || bytes === 8 || bytes % 16 === 0)) {
      this.fail(`vector of ${vec} x ${dtype} is not a 4, 8 or 16-byte access (or whole 16-byte pieces)`);
    }
  }

  /** shfl.sync over the whole warp; `lane` is the xor mask, delta or source lane. */
  shfl<T extends "f32" | "i32">(value: Expr<T>, mode: "bfly" | "down" | "up" | "idx", lane: Operand<"i32">): Expr<T> {
    const dst = this.declare(value.type);
    this.push({ kind: "shfl", dst, value, mode, lane: typeof lane === "number" ? i32(lane) : lane });
    return this.ref(dst);
  }

  /** Reduction over the 32 lanes (butterfly shuffles): every lane gets the result. */
  warpReduce(value: Expr<"f32">, op: ReduceOp, width = 32): Expr<"f32"> {
    let v = this.let(value);
    for (let off = width >> 1; off >= 1; off >>= 1) {
      const o = this.shfl(v, "bfly", off);
      v = this.let(op === "sum" ? v.add(o) : max(v, o));
    }
    return v;
  }

  /** Reduction over the CTA: every thread gets the result. Two barriers; safe to call repeatedly. */
  blockReduce(value: Expr<"f32">, op: ReduceOp): Expr<"f32"> {
    const w = this.warpReduce(value, op);
    if (this.warps === 1) return w;
    const scratch = this.sharedArray(`red${this.sharedArrays.length}`, "f32", this.warps);
    this.storeShared(scratch, this.warp, w, { pred: this.lane.eq(0) });
    this.sync();
    let acc = this.loadShared(scratch, 0) as Expr<"f32">;
    for (let i = 1; i < this.warps; i++) {
      const x = this.loadShared(scratch, i) as Expr<"f32">;
      acc = op === "sum" ? acc.add(x) : max(acc, x);
    }
    const r = this.let(acc);
    this.sync();
    return r;
  }

  /** i32 -> i64 for address arithmetic. */
  wide(x: Expr<"i32">): Expr<"i64"> {
    return cast(x, "i64");
  }
}
