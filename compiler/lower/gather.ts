// Launching a gather kernel (kernels/gather.ts) whose value function reads plan buffers by id. The
// sources are found by running the value function once with a recording reader (it only builds
// expressions), then the kernel is defined with one pointer param per distinct buffer. Each thread
// computes `vec` elements of the innermost dim (the widest of 8/4/2 dividing it, 16 bytes of output at
// most, and aligned in the output buffer): a request's `lanes` computes them together (a gather
// chain proves which reads are contiguous vectors), else `value` runs once per element.

import { type GatherValue, gatherKernel } from "../../kernels/gather.ts";
import type { Shape } from "../ir/index.ts";
import type { DType } from "../ir/types.ts";
import { constant, type Expr, f32, i32, type KernelBuilder, scalarOf } from "../tile/index.ts";
import type { LowerContext } from "./context.ts";
import { contentNamed } from "./naming.ts";
import { deviceBytes } from "./plan.ts";

/** Reads element `index` of a plan buffer (0 where `pred` is false). */
export type BufferReader = (buffer: number, index: Expr<"i32">, pred?: Expr<"pred">) => GatherValue;
/** Reads the thread's `vec` consecutive elements of a buffer from `index` (a multiple of vec, aligned). */
export type VectorReader = (buffer: number, index: Expr<"i32">, pred?: Expr<"pred">) => GatherValue[];

export interface GatherRequest {
  readonly out: number;
  readonly shape: Shape;
  readonly dtype: DType;
  /** The element at `coords`. */
  readonly value: (coords: readonly Expr<"i32">[], read: BufferReader, k: KernelBuilder | undefined) => GatherValue;
  /** The `vec` elements from `coords` along the last dim, when the request can do better than per element. */
  readonly lanes?: (
    coords: readonly Expr<"i32">[],
    vec: number,
    read: BufferReader,
    readVec: VectorReader,
    k: KernelBuilder | undefined,
  ) => GatherValue[];
  readonly nodes: readonly number[];
  readonly what?: string;
  readonly doc?: string;
}

/** Elements per thread of a gather into `out`: divides the last dim, <= 16 bytes, aligned in the buffer. */
export function gatherVec(ctx: LowerContext, out: number, shape: Shape, dtype: DType): number {
  const last = shape.length ? shape[shape.length - 1] : 1;
  const off = ctx.elementOffset(out);
  return [8, 4, 2].find((v) => v * deviceBytes(dtype) <= 16 && last % v === 0 && off % v === 0) ?? 1;
}

/** Coordinates of element e of a thread whose first element is at `c`. */
export function laneCoords(c: readonly Expr<"i32">[], e: number): Expr<"i32">[] {
  if (e === 0 || c.length === 0) return [...c];
  return [...c.slice(0, -1), c[c.length - 1].add(e)];
}

export function launchGather(ctx: LowerContext, r: GatherRequest): void {
  const vec = gatherVec(ctx, r.out, r.shape, r.dtype);
  const evaluate = (coords: readonly Expr<"i32">[], read: BufferReader, readVec: VectorReader, k: KernelBuilder | undefined) =>
    vec === 1
      ? [r.value(coords, read, k)]
      : r.lanes
        ? r.lanes(coords, vec, read, readVec, k)
        : Array.from({ length: vec }, (_, e) => r.value(laneCoords(coords, e), read, k));
  const sources: number[] = [];
  const slot = (buffer: number) => {
    let i = sources.indexOf(buffer);
    if (i < 0) i = sources.push(buffer) - 1;
    return i;
  };
  // Recording pass: placeholder coordinates, reads return zeros of the buffer's type.
  const dummy = r.shape.map((_, d) => constant(d, "i32"));
  const zero = (buffer: number) => {
    slot(buffer);
    return scalarOf(ctx.buffers[buffer].dtype) === "i32" ? i32(0) : f32(0);
  };
  evaluate(dummy, zero, (buffer) => new Array<GatherValue>(vec).fill(zero(buffer)), undefined);
  const named = contentNamed("gather", (name) =>
    gatherKernel({
      name,
      out: { dtype: r.dtype, shape: r.shape },
      sources: sources.map((b) => ctx.buffers[b].dtype),
      doc: r.doc,
      vec,
      value: (at) =>
        evaluate(
          at.coords,
          (buffer, index, pred) => at.read(slot(buffer), index, pred),
          (buffer, index, pred) => at.readVec(slot(buffer), index, pred),
          at.k,
        ),
    }),
  );
  const args: Record<string, { buffer: number }> = { out: { buffer: r.out } };
  sources.forEach((b, i) => {
    args[`src${i}`] = { buffer: b };
  });
  ctx.launch(named, args, { writes: ["out"], nodes: r.nodes, what: r.what });
}

/** Flat row-major index of `coords` in `shape` (size-1 dims contribute nothing). */
export function linearIndex(coords: readonly Expr<"i32">[], shape: Shape): Expr<"i32"> {
  let idx: Expr<"i32"> = i32(0);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1) idx = idx.add(coords[d].mul(stride));
    stride *= shape[d];
  }
  return idx;
}

/** Copies a whole buffer into another of the same shape (an output that must not alias a feed). */
export function launchCopy(ctx: LowerContext, from: number, to: number, nodes: readonly number[]): void {
  const b = ctx.buffers[to];
  launchGather(ctx, {
    out: to,
    shape: b.shape,
    dtype: b.dtype,
    value: (c, read) => read(from, linearIndex(c, b.shape)),
    nodes,
    what: "copy",
  });
}
