// Resampling, random masks and take's adjoint. Source-index rules (torch's nearest and linear
// interpolation) are evaluated on the host into small constant tables, so the kernels use exactly
// the indices and weights the CPU reference uses.

import { dropoutKernel, dropoutStreamHash, dropoutThreshold } from "../../../kernels/dropout.ts";
import { resampleBackwardKernel, takeBackwardKernel } from "../../../kernels/scatter.ts";
import { type Node, numel } from "../../ir/index.ts";
import type { Expr } from "../../tile/index.ts";
import type { LowerContext } from "../context.ts";
import { launchGather } from "../gather.ts";
import { cachedKernel } from "../kernel-cache.ts";
import { nearestTable } from "../layout.ts";
import { registerLowering } from "./registry.ts";

/** torch's linear-interpolation source (i0, i1, lambda) for output position d. */
export function linearSource(d: number, inSize: number, outSize: number, alignCorners: boolean): [number, number, number] {
  let src: number;
  if (alignCorners) src = outSize > 1 ? (d * (inSize - 1)) / (outSize - 1) : 0;
  else src = Math.max((d + 0.5) * (inSize / outSize) - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inSize - 1);
  return [i0, Math.min(i0 + 1, inSize - 1), src - i0];
}

function float(ctx: LowerContext, n: Node): "bf16" | "f32" {
  if (n.dtype === "i32") ctx.unsupported(n, "i32 input");
  return n.dtype;
}

function taps(mode: string, inSize: number, outSize: number, align: boolean): { src: number; weight: number }[][] {
  if (mode === "nearest") return nearestTable(inSize, outSize).map((s) => [{ src: s, weight: 1 }]);
  return Array.from({ length: outSize }, (_, d) => {
    const [i0, i1, l] = linearSource(d, inSize, outSize, align);
    return [
      { src: i0, weight: 1 - l },
      { src: i1, weight: l },
    ];
  });
}

registerLowering("upsample", (ctx, n) => {
  // Nearest is a data-movement op (a gather chain, layout.ts); bilinear weighs four reads.
  const dtype = float(ctx, n);
  const x = ctx.graph.node(n.inputs[0]);
  const [, , h, w] = x.shape;
  const [, , oh, ow] = n.shape;
  const align = n.attrs.alignCorners === true;
  const table = (inSize: number, outSize: number) => {
    const s = Array.from({ length: outSize }, (_, d) => linearSource(d, inSize, outSize, align));
    return {
      i0: ctx.constBuffer([outSize], "i32", Int32Array.from(s.map((t) => t[0]))),
      i1: ctx.constBuffer([outSize], "i32", Int32Array.from(s.map((t) => t[1]))),
      l: ctx.constBuffer([outSize], "f32", Float32Array.from(s.map((t) => t[2]))),
      m: ctx.constBuffer([outSize], "f32", Float32Array.from(s.map((t) => 1 - t[2]))),
    };
  };
  const ty = table(h, oh);
  const tx = table(w, ow);
  const src = ctx.bufferOf(x.id);
  const out = ctx.define(n);
  launchGather(ctx, {
    out,
    shape: n.shape,
    dtype,
    value: ([b, c, y, xx], read) => {
      const f = (buf: number, i: Expr<"i32">) => read(buf, i) as Expr<"f32">;
      const k = (buf: number, i: Expr<"i32">) => read(buf, i) as Expr<"i32">;
      const base = b
        .mul(x.shape[1])
        .add(c)
        .mul(h * w);
      const [y0, y1, x0, x1] = [k(ty.i0, y), k(ty.i1, y), k(tx.i0, xx), k(tx.i1, xx)];
      const at = (yy: Expr<"i32">, xi: Expr<"i32">) => f(src, base.add(yy.mul(w)).add(xi));
      const [lx, mx, ly, my] = [f(tx.l, xx), f(tx.m, xx), f(ty.l, y), f(ty.m, y)];
      const top = at(y0, x0).mul(mx).add(at(y0, x1).mul(lx));
      const bottom = at(y1, x0).mul(mx).add(at(y1, x1).mul(lx));
      return top.mul(my).add(bottom.mul(ly));
    },
    nodes: [n.id],
    what: "upsample bilinear",
  });
});

/** The inverse of a per-axis tap table: for each input position, the (output position, weight) pairs. */
function inverse(t: { src: number; weight: number }[][], inSize: number) {
  const lists: { d: number; weight: number }[][] = Array.from({ length: inSize }, () => []);
  t.forEach((list, d) => {
    for (const e of list) lists[e.src].push({ d, weight: e.weight });
  });
  const start = [0];
  for (const l of lists) start.push(start[start.length - 1] + l.length);
  return {
    start: Int32Array.from(start),
    src: Int32Array.from(lists.flatMap((l) => l.map((e) => e.d))),
    weight: Float32Array.from(lists.flatMap((l) => l.map((e) => e.weight))),
  };
}

registerLowering("upsampleBackward", (ctx, n) => {
  const dtype = float(ctx, n);
  const dy = ctx.graph.node(n.inputs[0]);
  const [batch, channels, h, w] = n.shape;
  const [, , oh, ow] = dy.shape;
  const align = n.attrs.alignCorners === true;
  const mode = n.attrs.mode as string;
  const rows = inverse(taps(mode, h, oh, align), h);
  const cols = inverse(taps(mode, w, ow, align), w);
  const table = (t: Int32Array | Float32Array) =>
    ctx.constBuffer([Math.max(1, t.length)], t instanceof Int32Array ? "i32" : "f32", t);
  const out = ctx.define(n);
  ctx.launch(
    cachedKernel(resampleBackwardKernel, { dtype }),
    {
      dy: { buffer: ctx.bufferOf(dy.id) },
      dx: { buffer: out },
      rowStart: { buffer: table(rows.start) },
      rowSrc: { buffer: table(rows.src) },
      rowWeight: { buffer: table(rows.weight) },
      colStart: { buffer: table(cols.start) },
      colSrc: { buffer: table(cols.src) },
      colWeight: { buffer: table(cols.weight) },
      planes: batch * channels,
      height: h,
      width: w,
      outHeight: oh,
      outWidth: ow,
    },
    { writes: ["dx"], nodes: [n.id] },
  );
});

for (const op of ["dropout", "dropPath"]) {
  registerLowering(op, (ctx, n) => {
    const dtype = float(ctx, n);
    const p = n.attrs.p as number;
    const out = ctx.define(n);
    const count = numel(n.shape);
    ctx.launch(
      cachedKernel(dropoutKernel, { dtype }),
      {
        x: { buffer: ctx.bufferOf(n.inputs[0]) },
        y: { buffer: out },
        seed: { buffer: ctx.seed() },
        n: count,
        per: op === "dropPath" ? count / n.shape[0] : 1,
        streamHash: dropoutStreamHash(n.attrs.stream as number),
        threshold: dropoutThreshold(p),
        scale: Math.fround(1 / (1 - p)),
      },
      { writes: ["y"], nodes: [n.id] },
    );
  });
}

registerLowering("takeBackward", (ctx, n) => {
  const dtype = float(ctx, n);
  const [dy, index] = n.inputs.map((i) => ctx.graph.node(i));
  const axis = n.attrs.axis as number;
  const size = n.attrs.size as number;
  const count = numel(index.shape);
  const outer = numel(dy.shape.slice(0, axis));
  const inner = numel(dy.shape.slice(axis + index.shape.length));
  const out = ctx.define(n);
  const scalars = { outer, size, count, inner };
  if (index.op === "const") {
    // A constant index (relative-position tables): the inverse map, built here, in increasing j.
    const data = index.attrs.data as Int32Array | Float32Array;
    const at = (j: number) => (data.length === 1 ? data[0] : data[j]);
    const lists: number[][] = Array.from({ length: size }, () => []);
    for (let j = 0; j < count; j++) {
      const t = at(j);
      if (t >= 0 && t < size) lists[t].push(j);
    }
    const start = [0];
    for (const l of lists) start.push(start[start.length - 1] + l.length);
    ctx.launch(
      cachedKernel(takeBackwardKernel, { dtype, csr: true }),
      {
        dy: { buffer: ctx.bufferOf(dy.id) },
        dx: { buffer: out },
        start: { buffer: ctx.constBuffer([size + 1], "i32", Int32Array.from(start)) },
        pos: { buffer: ctx.constBuffer([Math.max(1, count)], "i32", Int32Array.from(lists.flat())) },
        ...scalars,
      },
      { writes: ["dx"], nodes: [n.id] },
    );
    return;
  }
  ctx.launch(
    cachedKernel(takeBackwardKernel, { dtype, csr: false }),
    { dy: { buffer: ctx.bufferOf(dy.id) }, dx: { buffer: out }, index: { buffer: ctx.bufferOf(index.id) }, ...scalars },
    { writes: ["dx"], nodes: [n.id] },
  );
});
