// Launching a gather kernel (kernels/gather.ts) whose value function reads plan buffers by id. The
// sources are found by running the value function once with a recording reader (it only builds
// expressions), then the kernel is defined with one pointer param per distinct buffer.

import { type GatherValue, gatherKernel } from "../../kernels/gather.ts";
import type { Shape } from "../ir/index.ts";
import type { DType } from "../ir/types.ts";
import { constant, type Expr, f32, i32, type KernelBuilder, scalarOf } from "../tile/index.ts";
import type { LowerContext } from "./context.ts";
import { contentNamed } from "./naming.ts";

/** Reads element `index` of a plan buffer (0 where `pred` is false). */
export type BufferReader = (buffer: number, index: Expr<"i32">, pred?: Expr<"pred">) => GatherValue;

export interface GatherRequest {
  readonly out: number;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly value: (coords: readonly Expr<"i32">[], read: BufferReader, k: KernelBuilder | undefined) => GatherValue;
  readonly nodes: readonly number[];
  readonly what?: string;
  readonly doc?: string;
}

export function launchGather(ctx: LowerContext, r: GatherRequest): void {
  const sources: number[] = [];
  const slot = (buffer: number) => {
    let i = sources.indexOf(buffer);
    if (i < 0) i = sources.push(buffer) - 1;
    return i;
  };
  // Recording pass: placeholder coordinates, reads return a zero of the buffer's type.
  const dummy = r.shape.map((_, d) => constant(d, "i32"));
  r.value(
    dummy,
    (buffer) => {
      slot(buffer);
      return scalarOf(ctx.buffers[buffer].dtype) === "i32" ? i32(0) : f32(0);
    },
    undefined,
  );
  const named = contentNamed("gather", (name) =>
    gatherKernel({
      name,
      out: { dtype: r.dtype, shape: r.shape },
      sources: sources.map((b) => ctx.buffers[b].dtype),
      doc: r.doc,
      value: (at) => r.value(at.coords, (buffer, index, pred) => at.read(slot(buffer), index, pred), at.k),
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
