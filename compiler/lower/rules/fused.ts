// The fused ops (compiler/ir/ops/fused.ts) -> their kernels: cross-attention and the FPN merge
// here, window attention in fused-window.ts. bf16 graphs run the tensor-core kernels
// (kernels/cross-attention.ts, the lateral GEMM of kernels/gemm.ts), f32 graphs the CUDA-core ones
// (kernels/cross-attention-simt.ts, kernels/gemm-simt.ts); fpnMergeNormalize takes either. What has
// no kernel says why (a mixed-dtype node, a bf16 head dim that is not a multiple of 16), so a build
// lowers the unfused graph instead (compiler/frontend/lower-stage.ts).

import { crossAttentionBackwardKV, crossAttentionBackwardQ, crossAttentionForward } from "../../../kernels/cross-attention.ts";
import {
  simtCrossAttentionBackwardKV,
  simtCrossAttentionBackwardQ,
  simtCrossAttentionForward,
} from "../../../kernels/cross-attention-simt.ts";
import { fpnLateralGemm, fpnMergeNormalize } from "../../../kernels/fpn-merge.ts";
import { type Graph, type Node, numel } from "../../ir/index.ts";
import { launchGemm } from "../gemm.ts";
import { cachedKernel } from "../kernel-cache.ts";
import { registerLowering } from "./registry.ts";
import "./fused-window.ts";

/** The kernels run one dtype per launch: bf16 (tensor cores) or f32 (CUDA cores). */
const oneFloatType = (n: Node, g: Graph): string | undefined => {
  const dtypes = new Set([n, ...n.inputs.map((i) => g.node(i))].map((x) => x.dtype));
  return dtypes.size === 1 && (dtypes.has("bf16") || dtypes.has("f32"))
    ? undefined
    : `the ${n.op} kernels are bf16 or f32, not mixed`;
};

function headDimCheck(n: Node, channels: number): string | undefined {
  const d = channels / (n.attrs.heads as number);
  return d % 16 === 0 ? undefined : `head dim ${d} is not a multiple of 16`;
}

// ---- cross-attention -----------------------------------------------------------------------------

function crossSupport(n: Node, g: Graph): string | undefined {
  return oneFloatType(n, g) ?? (n.dtype === "bf16" ? headDimCheck(n, g.node(n.inputs[0]).shape[2]) : undefined);
}

/** The cross-attention kernels of the node's dtype. */
const crossKernels = (n: Node) =>
  n.dtype === "bf16"
    ? { fwd: crossAttentionForward, q: crossAttentionBackwardQ, kv: crossAttentionBackwardKV }
    : { fwd: simtCrossAttentionForward, q: simtCrossAttentionBackwardQ, kv: simtCrossAttentionBackwardKV };

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
      cachedKernel(crossKernels(n).fwd, { headDim: s.channels / s.heads }),
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
    ctx.launch(cachedKernel(crossKernels(n).q, config), args, {
      writes: ["dq", "stats"],
      nodes: [n.id],
      unused: ["dk", "dv"],
    });
    ctx.launch(cachedKernel(crossKernels(n).kv, config), args, { writes: ["dk", "dv"], nodes: [n.id], unused: ["dq"] });
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
    const dtype = n.dtype as "bf16" | "f32";
    const y = ctx.newBuffer(layout === "nhwc" ? [batch, hw, d] : [batch, d, hw], dtype);
    const xb = ctx.bufferOf(x.id);
    const wb = ctx.bufferOf(w.id);
    const gemm = fpnLateralGemm({ layout, convBias, dtype });
    if (layout === "nhwc") {
      launchGemm(ctx, {
        dtype,
        layout: gemm.layout,
        m: batch * hw,
        n: d,
        k: cin,
        batch: 1,
        a: { buffer: xb, ld: cin, stride: 0 },
        b: { buffer: wb, ld: cin, stride: 0 },
        c: { buffer: y, ld: d, stride: 0 },
        out: dtype,
        ...(bias !== undefined ? { bias } : {}),
        nodes: [n.id],
        what: "fpnMerge lateral",
      });
    } else {
      launchGemm(ctx, {
        dtype,
        layout: gemm.layout,
        m: d,
        n: hw,
        k: cin,
        batch,
        a: { buffer: wb, ld: cin, stride: 0 },
        b: { buffer: xb, ld: hw, stride: cin * hw },
        c: { buffer: y, ld: hw, stride: d * hw },
        out: dtype,
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
        dtype,
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
  oneFloatType,
);
