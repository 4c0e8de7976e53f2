// Reductions, softmax and the normalisations -> the row kernels (kernels/reduce.ts, softmax.ts,
// layernorm.ts, groupnorm.ts, groupnorm-backward.ts). A reduction over axes that are contiguous
// (once size-1 dims are dropped) is a row or column reduction of an [outer, len, inner] view;
// other axes are first gathered to the end. Softmax over a non-last axis is wrapped in two permutes.

import { groupNormForward } from "../../../kernels/groupnorm.ts";
import { groupNormBackward } from "../../../kernels/groupnorm-backward.ts";
import { layerNormBackward, layerNormForward } from "../../../kernels/layernorm.ts";
import { type ReduceOp, reduceColumns, reduceRows } from "../../../kernels/reduce.ts";
import { softmaxForward } from "../../../kernels/softmax.ts";
import { type Node, numel, type Shape } from "../../ir/index.ts";
import type { DType } from "../../ir/types.ts";
import type { LowerContext } from "../context.ts";
import { launchCopy, launchGather, linearIndex } from "../gather.ts";
import { cachedKernel } from "../kernel-cache.ts";
import { lowerFusedReduction } from "../reduce.ts";
import { registerLowering } from "./registry.ts";

type Float = "bf16" | "f32";

function float(ctx: LowerContext, n: Node): Float {
  if (n.dtype === "i32") ctx.unsupported(n, "i32 input");
  return n.dtype;
}

/** The widest vector (elements) dividing `cols` and every buffer's offset: 16 bytes at most. */
function rowVec(ctx: LowerContext, dtype: Float, cols: number, buffers: readonly number[]): number {
  const choices = dtype === "bf16" ? [8, 4, 2, 1] : [4, 2, 1];
  return choices.find((v) => cols % v === 0 && buffers.every((b) => ctx.elementOffset(b) % v === 0)) ?? 1;
}

/** Warps for one row of `cols` elements in vectors of `vec`: no more than there are vectors (1..4). */
function rowWarps(cols: number, vec: number): number {
  return Math.max(1, Math.min(4, Math.ceil(cols / vec / 32)));
}

/** Gathers `buffer` (shape) permuted by `perm` into a fresh buffer. */
function permuted(ctx: LowerContext, buffer: number, shape: Shape, perm: readonly number[], nodes: readonly number[]): number {
  const outShape = perm.map((p) => shape[p]);
  const dtype = ctx.buffers[buffer].dtype;
  const out = ctx.newBuffer(outShape, dtype);
  launchGather(ctx, {
    out,
    shape: outShape,
    dtype,
    value: (c, read) => {
      const inC = new Array(shape.length);
      perm.forEach((p, i) => {
        inC[p] = c[i];
      });
      return read(buffer, linearIndex(inC, shape));
    },
    nodes,
    what: "permute",
  });
  return out;
}

function reduceInto(ctx: LowerContext, n: Node, x: number, shape: Shape, dtype: DType, axes: Set<number>, out: number): void {
  const op = n.op as ReduceOp;
  const xd = dtype as Float;
  const od = n.dtype as Float;
  const live = shape.map((_d, i) => i).filter((i) => shape[i] !== 1);
  const reduced = live.filter((i) => axes.has(i));
  if (reduced.length === 0) {
    launchCopy(ctx, x, out, [n.id]);
    return;
  }
  const first = live.indexOf(reduced[0]);
  const contiguous = live.slice(first, first + reduced.length).every((i) => axes.has(i));
  if (!contiguous) {
    const kept = live.filter((i) => !axes.has(i));
    const perm = [...shape.map((_, i) => i).filter((i) => shape[i] === 1), ...kept, ...reduced];
    const t = permuted(ctx, x, shape, perm, [n.id]);
    reduceInto(
      ctx,
      n,
      t,
      perm.map((p) => shape[p]),
      dtype,
      new Set(reduced.map((_, j) => perm.length - reduced.length + j)),
      out,
    );
    return;
  }
  const dims = live.map((i) => shape[i]);
  const outer = numel(dims.slice(0, first));
  const len = numel(dims.slice(first, first + reduced.length));
  const inner = numel(dims.slice(first + reduced.length));
  if (inner === 1) {
    const vec = rowVec(ctx, xd, len, [x]);
    ctx.launch(
      cachedKernel(reduceRows, { dtype: xd, out: od, op, vec, warps: rowWarps(len, vec) }),
      { x: { buffer: x }, y: { buffer: out }, rows: outer, cols: len },
      { writes: ["y"], nodes: [n.id] },
    );
  } else {
    ctx.launch(
      cachedKernel(reduceColumns, { dtype: xd, out: od, op }),
      { x: { buffer: x }, y: { buffer: out }, outer, len, inner },
      { writes: ["y"], nodes: [n.id] },
    );
  }
}

/**
 * reduce.ts's fused path: for an input evaluated in place, reduced axes that are not one contiguous
 * suffix (columns, or scattered axes: no permuted copy), and few long rows (two passes keep the SMs
 * busy). Many rows reduced along the last dims keep reduceRows: one CTA per row, 16-byte loads.
 */
function fusedReduction(ctx: LowerContext, x: Node, axes: ReadonlySet<number>): boolean {
  if (ctx.analysis.kind[x.id] === "inline") return true;
  const live = x.shape.map((_d, i) => i).filter((i) => x.shape[i] !== 1);
  const reduced = live.filter((i) => axes.has(i));
  if (reduced.length === 0) return false;
  const suffix = live.slice(live.length - reduced.length).every((i) => axes.has(i));
  if (!suffix) return true;
  const len = numel(reduced.map((d) => x.shape[d]));
  const rows = numel(x.shape) / len;
  return rows < 64 && len >= 1024;
}

for (const op of ["sum", "mean", "max"]) {
  registerLowering(op, (ctx, n) => {
    const x = ctx.graph.node(n.inputs[0]);
    float(ctx, x);
    const r = x.shape.length;
    const axes = new Set((n.attrs.axes as number[]).map((a) => (a < 0 ? a + r : a)));
    const out = ctx.define(n);
    if (fusedReduction(ctx, x, axes)) lowerFusedReduction(ctx, n, x, axes, out);
    else reduceInto(ctx, n, ctx.bufferOf(x.id), x.shape, x.dtype, axes, out);
  });
}

registerLowering("softmax", (ctx, n) => {
  const dtype = float(ctx, n);
  const r = n.shape.length;
  const axis = (n.attrs.axis as number) < 0 ? (n.attrs.axis as number) + r : (n.attrs.axis as number);
  const out = ctx.define(n);
  const x = ctx.bufferOf(n.inputs[0]);
  const last = numel(n.shape.slice(axis + 1)) === 1;
  const cols = n.shape[axis];
  const rows = numel(n.shape) / Math.max(1, cols);
  const softmax = (src: number, dst: number) => {
    const vec = rowVec(ctx, dtype, cols, [src]);
    ctx.launch(
      cachedKernel(softmaxForward, { dtype, vec, warps: rowWarps(cols, vec) }),
      { x: { buffer: src }, y: { buffer: dst }, rows, cols },
      { writes: ["y"], nodes: [n.id] },
    );
  };
  if (last) {
    softmax(x, out);
    return;
  }
  const perm = [...n.shape.map((_, i) => i).filter((i) => i !== axis), axis];
  const t = permuted(ctx, x, n.shape, perm, [n.id]);
  const y = ctx.newBuffer(
    perm.map((p) => n.shape[p]),
    dtype,
  );
  softmax(t, y);
  const tmpShape = perm.map((p) => n.shape[p]);
  launchGather(ctx, {
    out,
    shape: n.shape,
    dtype,
    value: (c, read) =>
      read(
        y,
        linearIndex(
          perm.map((p) => c[p]),
          tmpShape,
        ),
      ),
    nodes: [n.id],
    what: "permute",
  });
});

/** Optional weight and bias operands: a weight without a bias gets a zero bias. */
function affineOperands(ctx: LowerContext, n: Node, channels: number, dtype: Float, withBias: boolean) {
  if (n.inputs.length < 2) return undefined;
  const w = ctx.bufferOf(n.inputs[1]);
  if (!withBias) return { w };
  const b = n.inputs.length > 2 ? ctx.bufferOf(n.inputs[2]) : ctx.constBuffer([channels], dtype, new Float32Array(channels));
  return { w, b };
}

registerLowering("layerNorm", (ctx, n) => {
  const dtype = float(ctx, n);
  const cols = n.shape[n.shape.length - 1];
  const rows = numel(n.shape) / cols;
  const x = ctx.bufferOf(n.inputs[0]);
  const aff = affineOperands(ctx, n, cols, dtype, true);
  const out = ctx.define(n);
  const vec = rowVec(ctx, dtype, cols, [x, ...(aff ? [aff.w, aff.b as number] : [])]);
  ctx.launch(
    cachedKernel(layerNormForward, { dtype, vec, warps: rowWarps(cols, vec), affine: aff !== undefined }),
    {
      x: { buffer: x },
      y: { buffer: out },
      ...(aff ? { w: { buffer: aff.w }, b: { buffer: aff.b as number } } : {}),
      rows,
      cols,
      eps: n.attrs.eps as number,
    },
    { writes: ["y"], nodes: [n.id] },
  );
});

registerLowering("layerNormBackward", (ctx, n) => {
  const dtype = float(ctx, n);
  const cols = n.shape[n.shape.length - 1];
  const rows = numel(n.shape) / cols;
  const x = ctx.bufferOf(n.inputs[0]);
  const dy = ctx.bufferOf(n.inputs[1]);
  const w = n.inputs.length > 2 ? ctx.bufferOf(n.inputs[2]) : undefined;
  const out = ctx.define(n);
  const mean = ctx.newBuffer([rows], "f32");
  const rstd = ctx.newBuffer([rows], "f32");
  const vec = rowVec(ctx, dtype, cols, [x, dy, ...(w !== undefined ? [w] : [])]);
  ctx.launch(
    cachedKernel(layerNormBackward, { dtype, vec, warps: rowWarps(cols, vec), affine: w !== undefined }),
    {
      x: { buffer: x },
      dy: { buffer: dy },
      dx: { buffer: out },
      ...(w !== undefined ? { w: { buffer: w } } : {}),
      mean: { buffer: mean },
      rstd: { buffer: rstd },
      rows,
      cols,
      eps: n.attrs.eps as number,
    },
    { writes: ["dx", "mean", "rstd"], nodes: [n.id] },
  );
});

function groupGeometry(n: Node) {
  const [batch, channels] = n.shape;
  const groups = n.attrs.groups as number;
  const spatial = numel(n.shape.slice(2));
  return { rows: batch * groups, groups, channelsPerGroup: channels / groups, spatial, channels };
}

registerLowering("groupNorm", (ctx, n) => {
  const dtype = float(ctx, n);
  const geo = groupGeometry(n);
  const x = ctx.bufferOf(n.inputs[0]);
  const aff = affineOperands(ctx, n, geo.channels, dtype, true);
  const out = ctx.define(n);
  const vec = rowVec(ctx, dtype, geo.spatial, [x]);
  ctx.launch(
    cachedKernel(groupNormForward, {
      dtype,
      vec,
      warps: rowWarps(geo.channelsPerGroup * geo.spatial, vec),
      affine: aff !== undefined,
    }),
    {
      x: { buffer: x },
      y: { buffer: out },
      ...(aff ? { w: { buffer: aff.w }, b: { buffer: aff.b as number } } : {}),
      rows: geo.rows,
      groups: geo.groups,
      channelsPerGroup: geo.channelsPerGroup,
      spatial: geo.spatial,
      eps: n.attrs.eps as number,
    },
    { writes: ["y"], nodes: [n.id] },
  );
});

registerLowering("groupNormBackward", (ctx, n) => {
  const dtype = float(ctx, n);
  const geo = groupGeometry(n);
  const x = ctx.bufferOf(n.inputs[0]);
  const dy = ctx.bufferOf(n.inputs[1]);
  const w = n.inputs.length > 2 ? ctx.bufferOf(n.inputs[2]) : undefined;
  const out = ctx.define(n);
  const vec = rowVec(ctx, dtype, geo.spatial, [x, dy]);
  ctx.launch(
    cachedKernel(groupNormBackward, {
      dtype,
      vec,
      warps: rowWarps(geo.channelsPerGroup * geo.spatial, vec),
      affine: w !== undefined,
    }),
    {
      x: { buffer: x },
      dy: { buffer: dy },
      dx: { buffer: out },
      ...(w !== undefined ? { w: { buffer: w } } : {}),
      rows: geo.rows,
      groups: geo.groups,
      channelsPerGroup: geo.channelsPerGroup,
      spatial: geo.spatial,
      eps: n.attrs.eps as number,
    },
    { writes: ["dx"], nodes: [n.id] },
  );
});
