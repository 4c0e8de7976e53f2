// The fused ops (compiler/ir/ops/fused.ts) -> their kernels (kernels/window-attention*.ts,
// cross-attention.ts, fpn-merge.ts), all bf16. Configurations without a kernel say why, so a build
// lowers the unfused graph instead (compiler/frontend/lower-stage.ts):
//   - f32 graphs (the kernels are bf16 tensor-core kernels),
//   - head dims that are not multiples of 16,
//   - windowAttentionBackward: the kernels compute dq, dk, dv but not the gradients of the bias
//     table, logit scale and pad value (sums over all windows; no kernel yet).

import { crossAttentionBackwardKV, crossAttentionBackwardQ, crossAttentionForward } from "../../../kernels/cross-attention.ts";
import { fpnLateralGemm, fpnMergeNormalize } from "../../../kernels/fpn-merge.ts";
import { windowAttentionForward } from "../../../kernels/window-attention.ts";
import { type Graph, type Node, numel } from "../../ir/index.ts";
import { launchGemm } from "../gemm.ts";
import { cachedKernel } from "../kernel-cache.ts";
import { registerLowering } from "./registry.ts";

const bf16Only = (n: Node, g: Graph): string | undefined =>
  [n, ...n.inputs.map((i) => g.node(i))].some((x) => x.dtype !== "bf16")
    ? `the ${n.op} kernels are bf16; this graph is ${n.dtype}`
    : undefined;

function headDimCheck(n: Node, channels: number): string | undefined {
  const d = channels / (n.attrs.heads as number);
  return d % 16 === 0 ? undefined : `head dim ${d} is not a multiple of 16`;
}

// ---- window attention ----------------------------------------------------------------------------

function windowSupport(n: Node, g: Graph): string | undefined {
  const qkv = g.node(n.inputs[0]);
  return bf16Only(n, g) ?? headDimCheck(n, qkv.shape[3] / 3);
}

registerLowering(
  "windowAttention",
  (ctx, n) => {
    const [qkv, table] = n.inputs.map((i) => ctx.graph.node(i));
    const cosine = n.attrs.cosine === true;
    const padInput = n.attrs.padInput === true;
    const [batch, height, width, c3] = qkv.shape;
    const channels = c3 / 3;
    const heads = n.attrs.heads as number;
    const [shiftY, shiftX] = n.attrs.shift as number[];
    let k = 2;
    const scale = cosine ? ctx.bufferOf(n.inputs[k++]) : undefined;
    const pad = padInput ? ctx.bufferOf(n.inputs[k]) : undefined;
    const out = ctx.define(n);
    const tableBuf = ctx.bufferOf(table.id);
    ctx.launch(
      cachedKernel(windowAttentionForward, { window: n.attrs.window as number, headDim: channels / heads, cosine, padInput }),
      {
        qkv: { buffer: ctx.bufferOf(qkv.id) },
        table: { buffer: tableBuf },
        scale: { buffer: scale ?? tableBuf },
        padValue: { buffer: pad ?? tableBuf },
        out: { buffer: out },
        batch,
        height,
        width,
        channels,
        heads,
        shiftY,
        shiftX,
        // Attrs a configuration does not use (qScale for V2, normEps for V1, the mask without a shift) may be absent.
        qScale: (n.attrs.qScale as number | undefined) ?? 1,
        normEps: (n.attrs.normEps as number | undefined) ?? 0,
        maskValue: (n.attrs.maskValue as number | undefined) ?? 0,
      },
      {
        writes: ["out"],
        nodes: [n.id],
        unused: [...(scale === undefined ? ["scale"] : []), ...(pad === undefined ? ["padValue"] : [])],
      },
    );
  },
  windowSupport,
);

registerLowering(
  "windowAttentionBackward",
  (ctx, n) => ctx.unsupported(n, windowBackwardReason),
  () => windowBackwardReason,
);

const windowBackwardReason = "the kernels compute dq, dk, dv; the bias table, logit scale and pad value gradients have none yet";

// ---- cross-attention -----------------------------------------------------------------------------

function crossSupport(n: Node, g: Graph): string | undefined {
  return bf16Only(n, g) ?? headDimCheck(n, g.node(n.inputs[0]).shape[2]);
}

function crossScalars(n: Node, q: Node, k: Node) {
  const [batch, queries, channels] = q.shape;
  return { batch, queries, keys: k.shape[1], channels, heads: n.attrs.heads as number, qScale: n.attrs.qScale as number };
}

registerLowering(
  "crossAttention",
  (ctx, n) => {
    const [q, k, v] = n.inputs.map((i) => ctx.graph.node(i));
    const out = ctx.define(n);
    const o = { buffer: out };
    const s = crossScalars(n, q, k);
    ctx.launch(
      cachedKernel(crossAttentionForward, { headDim: s.channels / s.heads }),
      {
        q: { buffer: ctx.bufferOf(q.id) },
        k: { buffer: ctx.bufferOf(k.id) },
        v: { buffer: ctx.bufferOf(v.id) },
        out: o,
        dout: o,
        dq: o,
        dk: o,
        dv: o,
        stats: o,
        ...s,
      },
      { writes: ["out"], nodes: [n.id], unused: ["dout", "dq", "dk", "dv", "stats"] },
    );
  },
  crossSupport,
);

registerLowering(
  "crossAttentionBackward",
  (ctx, n) => {
    const [q, k, v, out, dout] = n.inputs.map((i) => ctx.graph.node(i));
    const packed = ctx.define(n);
    const s = crossScalars(n, q, k);
    const stats = ctx.newBuffer([s.batch * s.heads * 2 * s.queries], "f32");
    const args = {
      q: { buffer: ctx.bufferOf(q.id) },
      k: { buffer: ctx.bufferOf(k.id) },
      v: { buffer: ctx.bufferOf(v.id) },
      out: { buffer: ctx.bufferOf(out.id) },
      dout: { buffer: ctx.bufferOf(dout.id) },
      // [dq | dk | dv], one buffer (the op's packed output).
      dq: { buffer: packed },
      dk: { buffer: packed, offset: numel(q.shape) },
      dv: { buffer: packed, offset: numel(q.shape) + numel(k.shape) },
      stats: { buffer: stats },
      ...s,
    };
    const config = { headDim: s.channels / s.heads };
    ctx.launch(cachedKernel(crossAttentionBackwardQ, config), args, {
      writes: ["dq", "stats"],
      nodes: [n.id],
      unused: ["dk", "dv"],
    });
    ctx.launch(cachedKernel(crossAttentionBackwardKV, config), args, { writes: ["dk", "dv"], nodes: [n.id], unused: ["dq"] });
  },
  crossSupport,
);

// ---- FPN merge -----------------------------------------------------------------------------------

registerLowering(
  "fpnMerge",
  (ctx, n) => {
    const [x, w, coarse] = n.inputs.map((i) => ctx.graph.node(i));
    const layout = n.attrs.layout as "nhwc" | "nchw";
    const convBias = n.attrs.convBias === true;
    const hasW = n.attrs.normWeight === true;
    const hasB = n.attrs.normBias === true;
    let k = 3;
    const bias = convBias ? ctx.bufferOf(n.inputs[k++]) : undefined;
    const normWeight = hasW ? ctx.bufferOf(n.inputs[k++]) : undefined;
    const normBias = hasB ? ctx.bufferOf(n.inputs[k]) : undefined;
    const [batch, d, height, width] = n.shape;
    const cin = w.shape[1];
    const hw = height * width;
    const y = ctx.newBuffer(layout === "nhwc" ? [batch, hw, d] : [batch, d, hw], "bf16");
    const xb = ctx.bufferOf(x.id);
    const wb = ctx.bufferOf(w.id);
    const gemm = fpnLateralGemm({ layout, convBias });
    if (layout === "nhwc") {
      launchGemm(ctx, {
        dtype: "bf16",
        layout: gemm.layout,
        m: batch * hw,
        n: d,
        k: cin,
        batch: 1,
        a: { buffer: xb, ld: cin, stride: 0 },
        b: { buffer: wb, ld: cin, stride: 0 },
        c: { buffer: y, ld: d, stride: 0 },
        out: "bf16",
        ...(bias !== undefined ? { bias } : {}),
        nodes: [n.id],
        what: "fpnMerge lateral",
      });
    } else {
      launchGemm(ctx, {
        dtype: "bf16",
        layout: gemm.layout,
        m: d,
        n: hw,
        k: cin,
        batch,
        a: { buffer: wb, ld: cin, stride: 0 },
        b: { buffer: xb, ld: hw, stride: cin * hw },
        c: { buffer: y, ld: hw, stride: d * hw },
        out: "bf16",
        nodes: [n.id],
        what: "fpnMerge lateral",
      });
    }
    const out = ctx.define(n);
    const convBiasInGemm = layout === "nhwc";
    const any = { buffer: y };
    ctx.launch(
      cachedKernel(fpnMergeNormalize, {
        yLayout: layout,
        convBias: convBias && !convBiasInGemm,
        normWeight: hasW,
        normBias: hasB,
      }),
      {
        y: { buffer: y },
        convBias: bias !== undefined ? { buffer: bias } : any,
        coarse: { buffer: ctx.bufferOf(coarse.id) },
        normWeight: normWeight !== undefined ? { buffer: normWeight } : any,
        normBias: normBias !== undefined ? { buffer: normBias } : any,
        out: { buffer: out },
        batch,
        channels: d,
        height,
        width,
        coarseH: coarse.shape[2],
        coarseW: coarse.shape[3],
        groups: n.attrs.groups as number,
        eps: n.attrs.eps as number,
      },
      {
        writes: ["out"],
        nodes: [n.id],
        unused: [
          ...(convBias && !convBiasInGemm ? [] : ["convBias"]),
          ...(normWeight === undefined ? ["normWeight"] : []),
          ...(normBias === undefined ? ["normBias"] : []),
        ],
      },
    );
  },
  bf16Only,
);
