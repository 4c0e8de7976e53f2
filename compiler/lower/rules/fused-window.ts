// windowAttention and windowAttentionBackward (compiler/ir/ops/fused.ts) -> their kernels:
// bf16 graphs on the tensor-core kernels (kernels/window-attention*.ts), f32 graphs on the SIMT
// kernels (kernels/window-attention-simt.ts).
//
// The backward is two kernels into the packed gradient [dqkv | dtable | dscale? | dpad?]: Q writes
// dq, the row statistics and each window's table/scale gradient (f32 scratch [windows, rows, heads]),
// KV writes dk/dv (and the padding tokens' dk/dv, f32 scratch [windows * N, 3C]); then one column
// reduction sums the windows of each scratch into its place in the packed buffer. Every sum runs in a
// fixed order, so a training step's gradients are the same bits run after run (no atomics).

import { reduceColumns } from "../../../kernels/reduce.ts";
import { windowAttentionForward } from "../../../kernels/window-attention.ts";
import { windowAttentionBackwardQ } from "../../../kernels/window-attention-backward.ts";
import { windowAttentionBackwardKV } from "../../../kernels/window-attention-backward-kv.ts";
import { paddedTokens, paramGradRows, statRows } from "../../../kernels/window-attention-backward-setup.ts";
import {
  simtWindowAttentionBackwardKV,
  simtWindowAttentionBackwardQ,
  simtWindowAttentionForward,
} from "../../../kernels/window-attention-simt.ts";
import type { Graph, Node } from "../../ir/index.ts";
import { windowAttentionGradSizes, windowGeometry } from "../../ir/ops/fused.ts";
import type { BufferArg, LowerContext } from "../context.ts";
import { cachedKernel } from "../kernel-cache.ts";
import { registerLowering } from "./registry.ts";

/** Why a window-attention node has no kernel, or undefined. */
function windowSupport(n: Node, g: Graph): string | undefined {
  const qkv = g.node(n.inputs[0]);
  const dtypes = new Set([n, ...n.inputs.map((i) => g.node(i))].map((x) => x.dtype));
  if (dtypes.size !== 1 || !(dtypes.has("bf16") || dtypes.has("f32"))) return `the ${n.op} kernels are bf16 or f32, not mixed`;
  const geo = windowGeometry(qkv.shape, n.attrs);
  if (geo.window > 16) return `window ${geo.window} > 16`;
  if (n.dtype === "bf16" && geo.headDim % 16 !== 0) return `head dim ${geo.headDim} is not a multiple of 16`;
  return undefined;
}

/** The launch's facts shared by every window kernel. */
function windowArgs(ctx: LowerContext, n: Node) {
  const qkv = ctx.graph.node(n.inputs[0]);
  const geo = windowGeometry(qkv.shape, n.attrs);
  const cosine = n.attrs.cosine === true;
  const padInput = n.attrs.padInput === true;
  // Inputs after qkv (and after out, dout for the backward): table, scale?, padValue?.
  const first = n.op === "windowAttention" ? 1 : 3;
  let k = first + 1;
  const table = ctx.bufferOf(n.inputs[first]);
  const scale = cosine ? ctx.bufferOf(n.inputs[k++]) : undefined;
  const pad = padInput ? ctx.bufferOf(n.inputs[k]) : undefined;
  const scalars = {
    batch: geo.batch,
    height: geo.height,
    width: geo.width,
    channels: geo.channels,
    heads: geo.heads,
    shiftY: geo.shift[0],
    shiftX: geo.shift[1],
    // Attrs a configuration does not use (qScale for V2, normEps for V1, the mask without a shift) may be absent.
    qScale: (n.attrs.qScale as number | undefined) ?? 1,
    normEps: (n.attrs.normEps as number | undefined) ?? 0,
    maskValue: (n.attrs.maskValue as number | undefined) ?? 0,
  };
  const qkvBuffer = ctx.bufferOf(qkv.id);
  const pointers: Record<string, BufferArg> = {
    qkv: { buffer: qkvBuffer },
    table: { buffer: table },
    scale: { buffer: scale ?? table },
    padValue: { buffer: pad ?? table },
  };
  const unused = [...(scale === undefined ? ["scale"] : []), ...(pad === undefined ? ["padValue"] : [])];
  return { geo, cosine, padInput, scalars, pointers, unused, pad, qkv: qkvBuffer };
}

/** Elements every row start of these buffers is a multiple of: 8 lets the bf16 kernels copy with 16-byte cp.async. */
function rowAlignment(ctx: LowerContext, channels: number, buffers: readonly number[]): number {
  let a = [8, 4, 2, 1].find((c) => channels % c === 0) ?? 1;
  for (const b of buffers) a = Math.min(a, ctx.alignment(b));
  return a;
}

registerLowering(
  "windowAttention",
  (ctx, n) => {
    const w = windowArgs(ctx, n);
    const out = ctx.define(n);
    const args = { ...w.pointers, out: { buffer: out }, ...w.scalars };
    const base = { window: w.geo.window, headDim: w.geo.headDim, cosine: w.cosine, padInput: w.padInput };
    const kernel =
      n.dtype === "bf16"
        ? cachedKernel(windowAttentionForward, {
            ...base,
            align: rowAlignment(ctx, w.geo.channels, [w.qkv, out, ...(w.pad !== undefined ? [w.pad] : [])]),
          })
        : cachedKernel(simtWindowAttentionForward, base);
    ctx.launch(kernel, args, { writes: ["out"], nodes: [n.id], unused: w.unused });
  },
  windowSupport,
);

registerLowering(
  "windowAttentionBackward",
  (ctx, n) => {
    const w = windowArgs(ctx, n);
    const { geo } = w;
    const [, outNode, doutNode] = n.inputs.map((i) => ctx.graph.node(i));
    const sizes = windowAttentionGradSizes(ctx.graph.node(n.inputs[0]).shape, n.attrs);
    const packed = ctx.define(n);
    const windows = geo.batch * geo.windowsH * geo.windowsW;
    const N = geo.window * geo.window;
    const rows = paramGradRows(geo.window, w.cosine);
    const stats = ctx.newBuffer([windows * geo.heads * statRows(w.cosine) * paddedTokens(geo.window)], "f32");
    const paramGrad = ctx.newBuffer([windows, rows, geo.heads], "f32");
    const padGrad = w.padInput ? ctx.newBuffer([windows * N, 3 * geo.channels], "f32") : paramGrad;
    const out = ctx.bufferOf(outNode.id);
    const dout = ctx.bufferOf(doutNode.id);
    const args = {
      ...w.pointers,
      out: { buffer: out },
      dout: { buffer: dout },
      dqkv: { buffer: packed },
      stats: { buffer: stats },
      paramGrad: { buffer: paramGrad },
      padGrad: { buffer: padGrad },
      ...w.scalars,
    };
    const base = { window: geo.window, headDim: geo.headDim, cosine: w.cosine, padInput: w.padInput };
    const bf16 = n.dtype === "bf16";
    const config = bf16
      ? { ...base, align: rowAlignment(ctx, geo.channels, [w.qkv, out, dout, packed, ...(w.pad !== undefined ? [w.pad] : [])]) }
      : base;
    const unusedPad = w.padInput ? [] : ["padGrad"];
    ctx.launch(cachedKernel(bf16 ? windowAttentionBackwardQ : simtWindowAttentionBackwardQ, config), args, {
      writes: ["dqkv", "stats", "paramGrad"],
      nodes: [n.id],
      what: "windowAttentionBackward dq",
      unused: [...w.unused, "padGrad"],
    });
    ctx.launch(cachedKernel(bf16 ? windowAttentionBackwardKV : simtWindowAttentionBackwardKV, config), args, {
      writes: ["dqkv", "padGrad"],
      nodes: [n.id],
      what: "windowAttentionBackward dk/dv",
      unused: [...w.unused, "paramGrad", ...unusedPad],
    });
    // The windows' partial sums -> [dtable | dscale] and [dpad], in place in the packed gradient.
    const reduce = cachedKernel(reduceColumns, { dtype: "f32", out: n.dtype === "bf16" ? "bf16" : "f32", op: "sum" });
    ctx.launch(
      reduce,
      { x: { buffer: paramGrad }, y: { buffer: packed, offset: sizes.qkv }, outer: 1, len: windows, inner: rows * geo.heads },
      { writes: ["y"], nodes: [n.id], what: "windowAttentionBackward table/scale sum" },
    );
    if (w.padInput) {
      ctx.launch(
        reduce,
        {
          x: { buffer: padGrad },
          y: { buffer: packed, offset: sizes.qkv + sizes.table + sizes.scale },
          outer: 1,
          len: windows * N,
          inner: 3 * geo.channels,
        },
        { writes: ["y"], nodes: [n.id], what: "windowAttentionBackward pad sum" },
      );
    }
  },
  windowSupport,
);
