// Reductions through kernels/reduce.ts's reduceFused: x viewed as [outer, len, inner] by its dims
// (inner = the kept dims after the last reduced one, so neighbouring threads read neighbouring
// elements; outer = the other kept dims; len = the reduced dims, in any positions: no permuted copy),
// its elements read through a gather chain (layout.ts), so an elementwise or data-movement producer
// used only by the reduction is evaluated in place rather than materialised. When one pass would
// leave SMs idle (a long len over a narrow inner: a bias gradient over every token) the rows are cut
// into chunks: f32 partials [outer, chunks, inner], then a second launch reduces them (deterministic).

import { type FusedReduceSpec, fusedReduceChunks, type ReduceAt, type ReduceOp, reduceFused } from "../../kernels/reduce.ts";
import { type Node, numel, type Shape } from "../ir/index.ts";
import { constant, type Expr, f32, i32 } from "../tile/index.ts";
import type { LowerContext } from "./context.ts";
import type { BufferReader, VectorReader } from "./gather.ts";
import { GatherChain } from "./layout.ts";
import { contentNamed } from "./naming.ts";
import { deviceBytes } from "./plan.ts";

/** CTAs worth filling the GPU with (about two waves of an A100's 108 / an H200's 132 SMs). */
const TARGET_CTAS = 256;
/** Each row lane sums at least this many rows per chunk (else the partials cost more than they save). */
const MIN_ROWS_PER_LANE = 8;

/** Coordinates of x for output (o over outerDims, col over innerDims) and reduction index r. */
function coordsOf(
  shape: Shape,
  dims: { outer: number[]; reduced: number[]; inner: number[] },
  o: Expr<"i32">,
  r: Expr<"i32">,
  col: Expr<"i32">,
) {
  const c: Expr<"i32">[] = shape.map(() => i32(0));
  const split = (idx: Expr<"i32">, ds: number[]) => {
    let inner = numel(ds.map((d) => shape[d]));
    ds.forEach((d, j) => {
      inner /= shape[d];
      const q = inner === 1 ? idx : idx.div(inner);
      c[d] = j === 0 ? q : q.rem(shape[d]);
    });
  };
  split(o, dims.outer);
  split(r, dims.reduced);
  split(col, dims.inner);
  return c;
}

interface Pass {
  readonly out: number;
  readonly outDtype: "bf16" | "f32";
  readonly op: ReduceOp;
  readonly outer: number;
  readonly len: number;
  readonly inner: number;
  readonly vec: number;
  readonly chunkRows: number;
  readonly divisor?: number;
  readonly value: (at: ReduceAt, read: BufferReader, readVec: VectorReader) => readonly Expr<"f32">[];
  readonly nodes: readonly number[];
  readonly what: string;
}

function launchPass(ctx: LowerContext, p: Pass): void {
  const sources: number[] = [];
  const slot = (b: number) => {
    let i = sources.indexOf(b);
    if (i < 0) i = sources.push(b) - 1;
    return i;
  };
  const { colThreads, threads } = threadShape(p.inner, p.vec, p.chunkRows);
  // Recording pass: which buffers the value function reads.
  const dummy: ReduceAt = {
    k: undefined as never,
    o: constant(0, "i32"),
    r: constant(0, "i32"),
    col: constant(0, "i32"),
    vec: p.vec,
    read: () => f32(0),
    readVec: () => new Array(p.vec).fill(f32(0)),
  };
  p.value(
    dummy,
    (b) => {
      slot(b);
      return f32(0);
    },
    (b) => {
      slot(b);
      return new Array(p.vec).fill(f32(0));
    },
  );
  const spec = (name: string): FusedReduceSpec => ({
    name,
    out: p.outDtype,
    sources: sources.map((b) => ctx.buffers[b].dtype),
    op: p.op,
    outer: p.outer,
    len: p.len,
    inner: p.inner,
    chunkRows: p.chunkRows,
    vec: p.vec,
    colThreads,
    threads,
    divisor: p.divisor,
    value: (at) =>
      p.value(
        at,
        (b, index, pred) => at.read(slot(b), index, pred),
        (b, index, pred) => at.readVec(slot(b), index, pred),
      ),
  });
  const named = contentNamed("reduce", (name) => reduceFused(spec(name)));
  const args: Record<string, { buffer: number }> = { y: { buffer: p.out } };
  sources.forEach((b, i) => {
    args[`src${i}`] = { buffer: b };
  });
  ctx.launch(named, args, { writes: ["y"], nodes: p.nodes, what: p.what });
}

const pow2 = (x: number) => 2 ** Math.ceil(Math.log2(Math.max(1, x)));

/**
 * A CTA's threads: enough column lanes for the tile (up to 128), row lanes for the rest, fewer
 * threads (down to a warp) when a chunk has too few rows to give each row lane several.
 */
function threadShape(inner: number, vec: number, chunkRows: number): { colThreads: number; threads: number } {
  const colThreads = Math.min(128, pow2(Math.ceil(inner / vec)));
  const rowLanes = Math.min(128 / colThreads, pow2(Math.ceil(chunkRows / MIN_ROWS_PER_LANE)));
  return { colThreads, threads: Math.max(32, colThreads * rowLanes) };
}

/** Rows per chunk for [outer, len, inner] read `vec` columns per thread. */
function chunkRowsFor(outer: number, len: number, inner: number, vec: number): number {
  const colThreads = Math.min(128, pow2(Math.ceil(inner / vec)));
  const rowLanes = 128 / colThreads;
  const ctas = Math.ceil(inner / (colThreads * vec)) * outer;
  const wanted = Math.ceil(TARGET_CTAS / ctas);
  const most = Math.max(1, Math.floor(len / (rowLanes * MIN_ROWS_PER_LANE)));
  const chunks = Math.max(1, Math.min(wanted, most));
  return Math.ceil(len / chunks);
}

/**
 * Reduces node `x` (materialised or inline) over `axes` into `out` (the reduction node `n`'s
 * buffer), in one or two launches.
 */
export function lowerFusedReduction(ctx: LowerContext, n: Node, x: Node, axes: ReadonlySet<number>, out: number): void {
  const shape = x.shape;
  const live = shape.map((_d, i) => i).filter((i) => shape[i] !== 1);
  const reduced = live.filter((i) => axes.has(i));
  const lastReduced = reduced[reduced.length - 1];
  const dims = {
    outer: live.filter((i) => !axes.has(i) && i < lastReduced),
    reduced,
    inner: live.filter((i) => !axes.has(i) && i > lastReduced),
  };
  const size = (ds: number[]) => numel(ds.map((d) => shape[d]));
  const [outer, len, inner] = [size(dims.outer), size(dims.reduced), size(dims.inner)];
  const op = n.op as ReduceOp;
  const last = shape.length - 1;
  const lastIsInner = dims.inner.includes(last);
  const maxVec = x.dtype === "bf16" ? 8 : 4;
  const vec = lastIsInner ? ([8, 4, 2].find((v) => v <= maxVec && inner % v === 0 && shape[last] % v === 0) ?? 1) : 1;
  const chain = new GatherChain(ctx, -1);
  const value = (at: ReduceAt, read: BufferReader, readVec: VectorReader) => {
    const c = coordsOf(shape, dims, at.o, at.r, at.col);
    const vs = vec > 1 ? chain.lanesAt(x.id, c, undefined, vec, read, readVec) : [chain.valueAt(x.id, c, undefined, read)];
    return vs as Expr<"f32">[];
  };
  const chunkRows = chunkRowsFor(outer, len, inner, vec);
  const chunks = fusedReduceChunks(len, chunkRows);
  const outDtype = n.dtype as "bf16" | "f32";
  if (chunks === 1) {
    launchPass(ctx, { out, outDtype, op, outer, len, inner, vec, chunkRows, divisor: len, value, nodes: [n.id], what: n.op });
    return;
  }
  const partial = ctx.newBuffer([outer, chunks, inner], "f32");
  launchPass(ctx, {
    out: partial,
    outDtype: "f32",
    op: op === "max" ? "max" : "sum",
    outer,
    len,
    inner,
    vec,
    chunkRows,
    value,
    nodes: [n.id],
    what: `${n.op} (${chunks} partials)`,
  });
  reducePartials(ctx, {
    partial,
    outer,
    chunks,
    inner,
    out,
    outDtype,
    op,
    divisor: len,
    nodes: [n.id],
    what: `${n.op} (of ${chunks} partials)`,
  });
}

/**
 * The second pass: f32 partials [outer, chunks, inner] reduced over chunks into `out` ([outer,
 * inner] of outDtype), one launch; `divisor` divides a mean (the whole reduced length).
 */
export function reducePartials(
  ctx: LowerContext,
  r: {
    partial: number;
    outer: number;
    chunks: number;
    inner: number;
    out: number;
    outDtype: "bf16" | "f32";
    op: ReduceOp;
    divisor?: number;
    nodes: readonly number[];
    what: string;
  },
): void {
  const { partial, outer, chunks, inner } = r;
  const vec = [4, 2].find((v) => inner % v === 0 && v * deviceBytes("f32") <= 16) ?? 1;
  launchPass(ctx, {
    out: r.out,
    outDtype: r.outDtype,
    op: r.op,
    outer,
    len: chunks,
    inner,
    vec,
    chunkRows: chunks,
    divisor: r.divisor,
    value: (at, read, readVec) => {
      const index = at.o.mul(chunks).add(at.r).mul(inner).add(at.col);
      return (vec > 1 ? readVec(partial, index) : [read(partial, index)]) as Expr<"f32">[];
    },
    nodes: r.nodes,
    what: r.what,
  });
}
