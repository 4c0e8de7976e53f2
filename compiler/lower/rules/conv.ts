// Convolutions as GEMMs over an im2col view (per group g, per sample n):
//   forward      out[n, g] [opg, L]     = W_g [opg, taps] . cols[n, g] [taps, L]          (nn)
//   input grad   dcols[n, g] [taps, L]  = W_g^T . dy[n, g] [opg, L]   (tn), then col2im to dx
//   weight grad  dW_g [opg, taps]       = sum_n dy[n, g] . cols[n, g]^T                (nt)
// with taps = (Cin/groups) kh kw in (ci, ky, kx) order and L = OH OW. A 1x1, stride-1, unpadded
// conv reads x itself as cols (no copy); patch embedding (stride = kernel) is a pure permutation.
// im2col and col2im are gathers (col2im sums the kh kw taps that land on a pixel, guarded).
// Products that are summed again later (dcols, per-sample dW, a pre-bias output) are kept in f32.

import { reduceColumns } from "../../../kernels/reduce.ts";
import { type Node, numel } from "../../ir/index.ts";
import { type Expr, i32 } from "../../tile/index.ts";
import type { LowerContext } from "../context.ts";
import { launchGather, linearIndex } from "../gather.ts";
import { launchGemm } from "../gemm.ts";
import { cachedKernel } from "../kernel-cache.ts";
import { registerLowering } from "./registry.ts";

function floatOf(ctx: LowerContext, n: Node): "bf16" | "f32" {
  if (n.dtype === "i32") ctx.unsupported(n, "integer convolution");
  return n.dtype;
}

interface ConvGeometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  cpg: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  stride: number[];
  padding: number[];
  dilation: number[];
  groups: number;
  taps: number;
  pixels: number;
  opg: number;
  direct: boolean;
}

function geometry(attrs: Node["attrs"], x: readonly number[], w: readonly number[], y: readonly number[]): ConvGeometry {
  const [n, cin, h, wd] = x;
  const [cout, cpg, kh, kw] = w;
  const [stride, padding, dilation] = ["stride", "padding", "dilation"].map((k) => attrs[k] as number[]);
  const groups = attrs.groups as number;
  const direct = kh === 1 && kw === 1 && stride.every((s) => s === 1) && padding.every((p) => p === 0);
  return {
    n,
    cin,
    h,
    w: wd,
    cout,
    cpg,
    kh,
    kw,
    oh: y[2],
    ow: y[3],
    stride,
    padding,
    dilation,
    groups,
    taps: cpg * kh * kw,
    pixels: y[2] * y[3],
    opg: cout / groups,
    direct,
  };
}

/** cols [N, Cin kh kw, L]: row (ci, ky, kx), column (oy, ox) holds x[n, ci, oy s - p + ky d, ...] or 0. */
function im2col(ctx: LowerContext, x: number, g: ConvGeometry, nodes: readonly number[]): number {
  const shape = [g.n, g.cin * g.kh * g.kw, g.pixels];
  const dtype = ctx.buffers[x].dtype;
  const out = ctx.newBuffer(shape, dtype);
  launchGather(ctx, {
    out,
    shape,
    dtype,
    value: ([b, r, l], read) => {
      const ci = r.div(g.kh * g.kw);
      const ky = g.kh === 1 ? i32(0) : r.div(g.kw).rem(g.kh);
      const kx = g.kw === 1 ? i32(0) : r.rem(g.kw);
      const iy = l.div(g.ow).mul(g.stride[0]).add(ky.mul(g.dilation[0])).sub(g.padding[0]);
      const ix = l.rem(g.ow).mul(g.stride[1]).add(kx.mul(g.dilation[1])).sub(g.padding[1]);
      let ok: Expr<"pred"> | undefined;
      if (g.padding[0] > 0) ok = iy.ge(0).and(iy.lt(g.h));
      if (g.padding[1] > 0) ok = ok ? ok.and(ix.ge(0).and(ix.lt(g.w))) : ix.ge(0).and(ix.lt(g.w));
      return read(x, linearIndex([b, ci, iy, ix], [g.n, g.cin, g.h, g.w]), ok);
    },
    nodes,
    what: "im2col",
  });
  return out;
}

registerLowering("conv2d", (ctx, node) => {
  const [xn, wn] = node.inputs.map((i) => ctx.graph.node(i));
  const dtype = floatOf(ctx, node);
  const g = geometry(node.attrs, xn.shape, wn.shape, node.shape);
  const x = ctx.bufferOf(xn.id);
  const w = ctx.bufferOf(wn.id);
  const cols = g.direct ? x : im2col(ctx, x, g, [node.id]);
  const rows = g.direct ? g.cin : g.cin * g.kh * g.kw;
  const out = ctx.define(node);
  const hasBias = node.inputs.length > 2;
  // With a bias the product goes to f32 first, so the bias add rounds once (as the CPU's sum does).
  const prod = hasBias ? ctx.newBuffer(node.shape, "f32") : out;
  for (let grp = 0; grp < g.groups; grp++) {
    launchGemm(ctx, {
      dtype,
      layout: "nn",
      m: g.opg,
      n: g.pixels,
      k: g.taps,
      batch: g.n,
      a: { buffer: w, ld: g.taps, stride: 0, offset: grp * g.opg * g.taps },
      b: { buffer: cols, ld: g.pixels, stride: rows * g.pixels, offset: grp * g.taps * g.pixels },
      c: { buffer: prod, ld: g.pixels, stride: g.cout * g.pixels, offset: grp * g.opg * g.pixels },
      out: hasBias ? "f32" : dtype,
      nodes: [node.id],
      what: "conv2d",
    });
  }
  if (hasBias) {
    const bias = ctx.bufferOf(node.inputs[2]);
    launchGather(ctx, {
      out,
      shape: node.shape,
      dtype: node.dtype,
      value: (c, read) => (read(prod, linearIndex(c, node.shape)) as Expr<"f32">).add(read(bias, c[1]) as Expr<"f32">),
      nodes: [node.id],
      what: "conv2d bias",
    });
  }
});

registerLowering("conv2dBackwardInput", (ctx, node) => {
  const [dyn, wn] = node.inputs.map((i) => ctx.graph.node(i));
  const dtype = floatOf(ctx, node);
  const g = geometry(node.attrs, node.shape, wn.shape, dyn.shape);
  const dy = ctx.bufferOf(dyn.id);
  const w = ctx.bufferOf(wn.id);
  const out = ctx.define(node);
  const rows = g.direct ? g.cin : g.cin * g.kh * g.kw;
  const dcols = g.direct ? out : ctx.newBuffer([g.n, rows, g.pixels], "f32");
  for (let grp = 0; grp < g.groups; grp++) {
    launchGemm(ctx, {
      dtype,
      layout: "tn",
      m: g.taps,
      n: g.pixels,
      k: g.opg,
      batch: g.n,
      a: { buffer: w, ld: g.taps, stride: 0, offset: grp * g.opg * g.taps },
      b: { buffer: dy, ld: g.pixels, stride: g.cout * g.pixels, offset: grp * g.opg * g.pixels },
      c: { buffer: dcols, ld: g.pixels, stride: rows * g.pixels, offset: grp * g.taps * g.pixels },
      out: g.direct ? dtype : "f32",
      nodes: [node.id],
      what: "conv2dBackwardInput",
    });
  }
  if (g.direct) return;
  // col2im: each input pixel sums the taps (ky, kx) whose output position (oy, ox) is whole and in range.
  launchGather(ctx, {
    out,
    shape: node.shape,
    dtype: node.dtype,
    value: ([b, ci, y, x], read) => {
      let acc: Expr<"f32"> | undefined;
      for (let ky = 0; ky < g.kh; ky++) {
        const ty = y.add(g.padding[0] - ky * g.dilation[0]);
        const oy = ty.div(g.stride[0]);
        const okY = ty
          .ge(0)
          .and(g.stride[0] > 1 ? ty.rem(g.stride[0]).eq(0) : ty.ge(0))
          .and(oy.lt(g.oh));
        for (let kx = 0; kx < g.kw; kx++) {
          const tx = x.add(g.padding[1] - kx * g.dilation[1]);
          const ox = tx.div(g.stride[1]);
          const okX = tx
            .ge(0)
            .and(g.stride[1] > 1 ? tx.rem(g.stride[1]).eq(0) : tx.ge(0))
            .and(ox.lt(g.ow));
          const r = ci.mul(g.kh * g.kw).add(ky * g.kw + kx);
          const v = read(dcols, linearIndex([b, r, oy.mul(g.ow).add(ox)], [g.n, rows, g.pixels]), okY.and(okX)) as Expr<"f32">;
          acc = acc ? acc.add(v) : v;
        }
      }
      return acc as Expr<"f32">;
    },
    nodes: [node.id],
    what: "col2im",
  });
});

registerLowering("conv2dBackwardWeight", (ctx, node) => {
  const [xn, dyn] = node.inputs.map((i) => ctx.graph.node(i));
  const dtype = floatOf(ctx, node);
  const g = geometry(node.attrs, xn.shape, node.shape, dyn.shape);
  const x = ctx.bufferOf(xn.id);
  const dy = ctx.bufferOf(dyn.id);
  const cols = g.direct ? x : im2col(ctx, x, g, [node.id]);
  const rows = g.direct ? g.cin : g.cin * g.kh * g.kw;
  const out = ctx.define(node);
  // One sample: straight into dw. Several: per-sample products in f32, then a sum over samples.
  const perSample = g.n === 1 ? out : ctx.newBuffer([g.n, g.cout, g.taps], "f32");
  for (let grp = 0; grp < g.groups; grp++) {
    launchGemm(ctx, {
      dtype,
      layout: "nt",
      m: g.opg,
      n: g.taps,
      k: g.pixels,
      batch: g.n,
      a: { buffer: dy, ld: g.pixels, stride: g.cout * g.pixels, offset: grp * g.opg * g.pixels },
      b: { buffer: cols, ld: g.pixels, stride: rows * g.pixels, offset: grp * g.taps * g.pixels },
      c: { buffer: perSample, ld: g.taps, stride: g.cout * g.taps, offset: grp * g.opg * g.taps },
      out: g.n === 1 ? dtype : "f32",
      nodes: [node.id],
      what: "conv2dBackwardWeight",
    });
  }
  if (g.n > 1) {
    ctx.launch(
      cachedKernel(reduceColumns, { dtype: "f32" as const, out: dtype, op: "sum" as const }),
      { x: { buffer: perSample }, y: { buffer: out }, outer: 1, len: g.n, inner: numel(node.shape) },
      { writes: ["y"], nodes: [node.id], what: "conv2dBackwardWeight sum" },
    );
  }
});
