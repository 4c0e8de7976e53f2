// Reductions (sum, mean, max) in f32 over a contiguous axis, after the caller has viewed the tensor as
// [outer, len, inner]:
//   reduceRows     inner = 1: one CTA per row, threads stride the row, block reduction (shuffles).
//   reduceColumns  inner > 1: one thread per (outer, inner) output walks len; neighbouring threads
//                  read neighbouring columns, so every load is coalesced.
//   reduceFused    any [outer, len, inner] whose elements come from a value function (a materialised
//                  tensor, or an elementwise / data-movement chain evaluated in place: compiler/lower
//                  reads a bias gradient's product or a permuted tensor without materialising it).
//                  A CTA covers a tile of columns (colThreads x vec) and a chunk of rows (rowThreads
//                  stride it); the row lanes combine through shared memory in a fixed order. With
//                  several chunks the CTA writes f32 partials [outer, chunks, inner] and a second
//                  launch of the same generator reduces them: a two-pass, deterministic reduction
//                  that keeps every SM busy when len is long and inner narrow (bias gradients).

import {
  cast,
  defineKernel,
  type ElemType,
  type Expr,
  f32,
  type GlobalPtr,
  type KernelBuilder,
  type KernelProgram,
  max,
  min,
  type ParamSpec,
  ptr,
  scalar,
} from "../compiler/tile/index.ts";
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

/** What a fused reduction's value function sees for one row of the thread's columns. */
export interface ReduceAt {
  readonly k: KernelBuilder;
  /** Index over the outer kept dims, the reduced dims, and the first of the thread's `vec` columns. */
  readonly o: Expr<"i32">;
  readonly r: Expr<"i32">;
  readonly col: Expr<"i32">;
  readonly vec: number;
  /** Element `index` of source `i` (0 for columns past the end or where `pred` is false). */
  read(i: number, index: Expr<"i32">, pred?: Expr<"pred">): Expr<"f32">;
  /** `vec` consecutive elements from `index` (a multiple of vec, aligned). */
  readVec(i: number, index: Expr<"i32">, pred?: Expr<"pred">): Expr<"f32">[];
}

export interface FusedReduceSpec {
  readonly name: string;
  readonly out: "bf16" | "f32";
  readonly sources: readonly ElemType[];
  readonly op: ReduceOp;
  readonly outer: number;
  readonly len: number;
  readonly inner: number;
  /** Rows per CTA: len is cut into ceil(len / chunkRows) chunks (grid.y). */
  readonly chunkRows: number;
  /** Columns per thread (divides inner). */
  readonly vec: number;
  /** Threads across the column tile (a power of two <= threads); the other threads / colThreads stride rows. */
  readonly colThreads: number;
  /** Threads per CTA: 32, 64 or 128 (default 128). */
  readonly threads?: number;
  /** mean: the sum is divided by this (the whole reduced length, also when this launch sums partials). */
  readonly divisor?: number;
  /** The thread's `vec` values of row r. */
  readonly value: (at: ReduceAt) => readonly Expr<"f32">[];
  readonly doc?: string;
}

export function fusedReduceChunks(len: number, chunkRows: number): number {
  return Math.max(1, Math.ceil(len / chunkRows));
}

export function reduceFused(spec: FusedReduceSpec): KernelProgram {
  const { outer, len, inner, vec, colThreads: tc, chunkRows: R } = spec;
  const threads = spec.threads ?? 128;
  if (inner % vec !== 0 || threads % tc !== 0 || ![32, 64, 128].includes(threads))
    throw new Error(`reduceFused ${spec.name}: vec ${vec} / colThreads ${tc} / threads ${threads}`);
  const tr = threads / tc;
  const chunks = fusedReduceChunks(len, R);
  const tile = tc * vec;
  const colTiles = Math.ceil(inner / tile);
  const params: Record<string, ParamSpec> = {};
  spec.sources.forEach((d, i) => {
    params[`src${i}`] = ptr(d);
  });
  params.y = ptr(spec.out);
  const isMax = spec.op === "max";
  return defineKernel(
    {
      name: spec.name,
      params,
      warps: threads / 32,
      // outer rides on x with the column tiles: z is limited to 65535 CTAs (a bias gradient over
      // batch x tokens rows has more).
      grid: () => [colTiles * outer, chunks, 1],
      doc: spec.doc ?? `y[o, chunk, i] = ${spec.op} over rows of x[o, :, i] ([${outer}, ${len}, ${inner}], ${chunks} chunks)`,
    },
    (k, p) => {
      const colLane = k.let(tc === 1 ? k.tid.mul(0) : k.tid.rem(tc), "colLane");
      const rowLane = k.let(tc === 1 ? k.tid : k.tid.div(tc), "rowLane");
      const o = k.let(colTiles === 1 ? k.blockIdx.x : k.blockIdx.x.div(colTiles), "o");
      const colTile = colTiles === 1 ? k.blockIdx.x.mul(0) : k.blockIdx.x.rem(colTiles);
      const col = k.let(colTile.mul(tile).add(colLane.mul(vec)), "col");
      const colOk = k.let(col.lt(inner), "colOk");
      const chunk = k.blockIdx.y;
      const src = (i: number) => p[`src${i}`] as GlobalPtr;
      const guard = (pred?: Expr<"pred">) => (pred ? colOk.and(pred) : colOk);
      const acc = Array.from({ length: vec }, (_, e) => k.var("f32", isMax ? Number.NEGATIVE_INFINITY : 0, `acc${e}`));
      const start = k.let(chunk.mul(R).add(rowLane), "r0");
      const end = k.let(min(chunk.mul(R).add(R), len), "rEnd");
      k.for(
        start,
        end,
        (r) => {
          const vs = spec.value({
            k,
            o,
            r,
            col,
            vec,
            read: (i, index, pred) => (k.loadGlobal(src(i), index, { pred: guard(pred) }) as Expr<"f32">[])[0],
            readVec: (i, index, pred) => k.loadGlobal(src(i), index, { vec, pred: guard(pred) }) as Expr<"f32">[],
          });
          if (vs.length !== vec) throw new Error(`reduceFused ${spec.name}: ${vs.length} values for vec ${vec}`);
          vs.forEach((v, e) => {
            k.assign(acc[e], isMax ? max(acc[e], v) : acc[e].add(v));
          });
        },
        { step: tr, name: "r" },
      );
      let totals: Expr<"f32">[] = acc;
      let first: Expr<"pred"> = colOk;
      if (tr > 1 && tc === 1) {
        // Row lanes only (one output per CTA): the block reduction's fixed shuffle tree.
        totals = acc.map((a) => k.blockReduce(a, isMax ? "max" : "sum"));
        first = colOk.and(k.tid.eq(0));
      } else if (tr > 1) {
        // Row lanes combine through shared memory in a fixed tree: lane j adds lane j + step's sums.
        const s = k.sharedArray("rowSums", "f32", threads * vec);
        const at = (lane: Expr<"i32">, e: number) => lane.mul(tile).add(colLane.mul(vec)).add(e);
        acc.forEach((a, e) => {
          k.storeShared(s, at(rowLane, e), a);
        });
        for (let step = tr / 2; step >= 1; step /= 2) {
          k.sync();
          k.if(rowLane.lt(step), () => {
            for (let e = 0; e < vec; e++) {
              const mine = k.loadShared(s, at(rowLane, e)) as Expr<"f32">;
              const theirs = k.loadShared(s, at(rowLane.add(step), e)) as Expr<"f32">;
              k.storeShared(s, at(rowLane, e), isMax ? max(mine, theirs) : mine.add(theirs));
            }
          });
        }
        k.sync();
        totals = acc.map((_a, e) => k.let(k.loadShared(s, colLane.mul(vec).add(e)) as Expr<"f32">, `total${e}`));
        first = colOk.and(rowLane.eq(0));
      }
      const outs = totals.map((t) => (spec.op === "mean" && spec.divisor !== undefined ? t.div(f32(spec.divisor)) : t));
      const at = o.mul(chunks).add(chunk).mul(inner).add(col);
      k.storeGlobal(p.y as GlobalPtr, at, outs, { pred: first });
    },
  );
}
