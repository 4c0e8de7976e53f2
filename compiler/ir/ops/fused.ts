// Fused ops: what compiler/passes/fuse-*.ts put in place of a recognised subgraph. Each has a CPU
// reference (runtime/cpu/kernels/fused-*.ts), a gradient (compiler/autodiff/rules/fused.ts) and a
// kernel (kernels/). The maths of each is exactly the subgraph it replaces (compiler/passes/README.md).
//
// windowAttention reads q/k/v of every token straight from the per-token qkv projection of the
// un-partitioned [B, H, W, 3C] map: a window token at rolled-map position p reads the map at
// (p + shift) mod padded size, and a position beyond the map (padding) reads `padValue` (what a
// linear layer gives a zero-padded token: its bias). The output goes back to the same addresses.

import { numel, type Shape, type TensorType } from "../types.ts";
import { attrNumbers, defineOp, fail, floatOnly, sameDType } from "./registry.ts";

// ---- window geometry (shared by the CPU reference, the pass's checks and the kernels) ----

export interface WindowGeometry {
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  /** C: channels of the output; the qkv map has 3C. */
  readonly channels: number;
  readonly heads: number;
  readonly headDim: number;
  /** M: window side; N = M*M tokens. */
  readonly window: number;
  readonly paddedH: number;
  readonly paddedW: number;
  /** The cyclic shift of the rolled map, [sy, sx] in [0, padded). */
  readonly shift: readonly [number, number];
  readonly windowsH: number;
  readonly windowsW: number;
}

export function paddedExtent(size: number, window: number): number {
  return Math.ceil(size / window) * window;
}

export function windowGeometry(qkv: Shape, attrs: { readonly [k: string]: unknown }): WindowGeometry {
  const [batch, height, width, c3] = qkv;
  const heads = attrs.heads as number;
  const window = attrs.window as number;
  const [sy, sx] = attrs.shift as readonly number[];
  const channels = c3 / 3;
  const paddedH = paddedExtent(height, window);
  const paddedW = paddedExtent(width, window);
  return {
    batch,
    height,
    width,
    channels,
    heads,
    headDim: channels / heads,
    window,
    paddedH,
    paddedW,
    shift: [sy, sx],
    windowsH: paddedH / window,
    windowsW: paddedW / window,
  };
}

/**
 * The shift-mask region of a rolled-map row (or column) p: torchvision labels the slices
 * [0, P-M), [P-M, P-s), [P-s, P) of the padded side P; an unshifted side (s = 0) is one region.
 */
export function shiftRegion(p: number, padded: number, window: number, shift: number): number {
  if (shift === 0) return 0;
  return p < padded - window ? 0 : p < padded - shift ? 1 : 2;
}

/** Row of the (2M-1)^2 relative-position table for tokens i, j (row-major inside an M x M window). */
export function relativeIndex(i: number, j: number, window: number): number {
  const dy = Math.floor(i / window) - Math.floor(j / window) + window - 1;
  const dx = (i % window) - (j % window) + window - 1;
  return dy * (2 * window - 1) + dx;
}

// ---- shape rules ----

function checkWindowInputs(op: string, inputs: readonly TensorType[], attrs: { readonly [k: string]: unknown }, first: number) {
  const [qkv] = inputs;
  floatOnly(op, qkv);
  sameDType(op, inputs);
  if (qkv.shape.length !== 4 || qkv.shape[3] % 3 !== 0) fail(`${op}: qkv must be [B, H, W, 3C], got [${qkv.shape}]`);
  const geo = windowGeometry(qkv.shape, attrs);
  const { heads, window, channels } = geo;
  if (!Number.isInteger(heads) || heads <= 0 || channels % heads !== 0)
    fail(`${op}: ${channels} channels do not split into ${heads} heads`);
  if (!Number.isInteger(window) || window <= 0) fail(`${op}: bad window ${window}`);
  const [sy, sx] = geo.shift;
  if (!(sy >= 0 && sy < geo.paddedH && sx >= 0 && sx < geo.paddedW)) fail(`${op}: shift [${sy},${sx}] out of range`);
  const cosine = attrs.cosine === true;
  const expected = first + 1 + (cosine ? 1 : 0) + (attrs.padInput === true ? 1 : 0);
  if (inputs.length !== expected) fail(`${op}: expected ${expected} inputs for these attrs, got ${inputs.length}`);
  const table = inputs[first];
  const side = 2 * window - 1;
  if (table.shape.join() !== [side * side, heads].join())
    fail(`${op}: bias table must be [${side * side}, ${heads}], got [${table.shape}]`);
  let k = first + 1;
  if (cosine) {
    const s = inputs[k++];
    if (numel(s.shape) !== heads || s.shape.some((d, i) => d !== 1 && i !== s.shape.length - 3))
      fail(`${op}: logit scale must be [${heads}, 1, 1], got [${s.shape}]`);
  }
  if (attrs.padInput === true) {
    const p = inputs[k];
    if (p.shape.join() !== String(3 * channels)) fail(`${op}: pad value must be [${3 * channels}], got [${p.shape}]`);
  }
  return geo;
}

function windowAttentionFlops(geo: WindowGeometry): number {
  const n = geo.window * geo.window;
  const windows = geo.batch * geo.windowsH * geo.windowsW;
  // q k^T and p v (2 FLOPs per multiply-add each) + bias, mask and softmax (~7 per logit).
  return windows * geo.heads * (4 * n * n * geo.headDim + 7 * n * n);
}

/**
 * windowAttention(qkv [B,H,W,3C], table [(2M-1)^2, heads], scale? [heads,1,1], padValue? [3C])
 *   {heads, window, shift: [sy, sx], cosine, qScale, normEps, maskValue, padInput} -> [B, H, W, C]
 *
 * Per window w of the map padded to whole windows and rolled by -shift, per head h, tokens i, j:
 *   dot (V1):     logit = (qScale * q_i) . k_j
 *   cosine (V2):  logit = (q_i / max(|q_i|, normEps)) . (k_j / max(|k_j|, normEps)) * scale[h]
 *   logit += table[relativeIndex(i, j), h] + (shift != 0 && region(i) != region(j) ? maskValue : 0)
 *   out_i = softmax_j(logit) . v_j
 * q/k/v of head h are channels [h*d, (h+1)*d) of the qkv thirds; out_i has channels h*d + e.
 * `scale` is present iff cosine, `padValue` iff padInput (otherwise padding tokens read zeros).
 */
defineOp({
  name: "windowAttention",
  inputs: 2,
  maxInputs: 4,
  infer(inputs, attrs) {
    const geo = checkWindowInputs("windowAttention", inputs, attrs, 1);
    return { shape: [geo.batch, geo.height, geo.width, geo.channels], dtype: inputs[0].dtype };
  },
  flops: ([qkv], _out, attrs) => windowAttentionFlops(windowGeometry(qkv.shape, attrs)),
});

/** Lengths of the pieces of windowAttentionBackward's packed output, in order. */
export function windowAttentionGradSizes(qkv: Shape, attrs: { readonly [k: string]: unknown }) {
  const geo = windowGeometry(qkv, attrs);
  const side = 2 * geo.window - 1;
  return {
    qkv: numel(qkv),
    table: side * side * geo.heads,
    scale: attrs.cosine === true ? geo.heads : 0,
    padValue: attrs.padInput === true ? 3 * geo.channels : 0,
  };
}

/**
 * windowAttentionBackward(qkv, out, dout, table, scale?, padValue?) {the forward's attrs} -> packed
 * 1-D [dqkv | dtable | dscale? | dpadValue?] (one buffer: a kernel writes dq/dk/dv at the map's
 * addresses and accumulates the table, scale and padding-token gradients beside them; `segment`
 * views pick the pieces). `out` is the forward's output (softmax row statistics are recomputed).
 */
defineOp({
  name: "windowAttentionBackward",
  inputs: 4,
  maxInputs: 6,
  infer(inputs, attrs) {
    const [qkv, out, dout] = inputs;
    const geo = checkWindowInputs("windowAttentionBackward", [qkv, ...inputs.slice(3)], attrs, 1);
    const want = [geo.batch, geo.height, geo.width, geo.channels].join();
    if (out.shape.join() !== want || dout.shape.join() !== want) fail(`windowAttentionBackward: out and dout must be [${want}]`);
    sameDType("windowAttentionBackward", inputs);
    const s = windowAttentionGradSizes(qkv.shape, attrs);
    return { shape: [s.qkv + s.table + s.scale + s.padValue], dtype: qkv.dtype };
  },
  flops: ([qkv], _out, attrs) => 2.5 * windowAttentionFlops(windowGeometry(qkv.shape, attrs)),
});

// ---- cross-attention ----

function checkCrossInputs(op: string, [q, k, v]: readonly TensorType[], attrs: { readonly [k: string]: unknown }) {
  floatOnly(op, q);
  sameDType(op, [q, k, v]);
  if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.join() !== k.shape.join())
    fail(`${op}: q [B,N,C], k and v [B,L,C] expected, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  if (q.shape[0] !== k.shape[0] || q.shape[2] !== k.shape[2]) fail(`${op}: q [${q.shape}] and k [${k.shape}] differ in B or C`);
  const heads = attrs.heads as number;
  if (!Number.isInteger(heads) || heads <= 0 || q.shape[2] % heads !== 0)
    fail(`${op}: ${q.shape[2]} channels do not split into ${heads} heads`);
  if (typeof attrs.qScale !== "number") fail(`${op}: qScale must be a number`);
}

/**
 * crossAttention(q [B,N,C], k [B,L,C], v [B,L,C]) {heads, qScale} -> [B, N, C]: multi-head
 * softmax((qScale * q_h) k_h^T) v_h with head h on channels [h*d, (h+1)*d) (the head split and merge
 * permutes are folded into addressing).
 */
defineOp({
  name: "crossAttention",
  inputs: 3,
  infer(inputs, attrs) {
    checkCrossInputs("crossAttention", inputs, attrs);
    return inputs[0];
  },
  flops: ([q, k], _out, attrs) => q.shape[0] * q.shape[1] * k.shape[1] * (4 * q.shape[2] + 5 * (attrs.heads as number)),
});

/** crossAttentionBackward(q, k, v, out, dout) {heads, qScale} -> packed 1-D [dq | dk | dv]. */
defineOp({
  name: "crossAttentionBackward",
  inputs: 5,
  infer(inputs, attrs) {
    const [q, k, v, out, dout] = inputs;
    checkCrossInputs("crossAttentionBackward", [q, k, v], attrs);
    sameDType("crossAttentionBackward", inputs);
    if (out.shape.join() !== q.shape.join() || dout.shape.join() !== q.shape.join())
      fail(`crossAttentionBackward: out and dout must be [${q.shape}]`);
    return { shape: [numel(q.shape) + 2 * numel(k.shape)], dtype: q.dtype };
  },
  flops: ([q, k]) => 2.5 * q.shape[0] * q.shape[1] * k.shape[1] * 4 * q.shape[2],
});

// ---- FPN merge ----

/** The input order of fpnMerge: x, weight, coarse, then bias / normWeight / normBias when present. */
export function fpnMergeInputNames(attrs: { readonly [k: string]: unknown }): string[] {
  const names = ["x", "weight", "coarse"];
  if (attrs.convBias === true) names.push("bias");
  if (attrs.normWeight === true) names.push("normWeight");
  if (attrs.normBias === true) names.push("normBias");
  return names;
}

/**
 * fpnMerge(x, weight [D,Cin,1,1], coarse [B,D,h,w], bias? [D], normWeight? [D], normBias? [D])
 *   {groups, eps, layout: "nchw" | "nhwc", convBias, normWeight, normBias} -> [B, D, H, W]:
 * groupNorm(conv1x1(x) + bias) * normWeight + normBias + upsampleNearest(coarse, [H, W]), the FPN
 * top-down merge. x is [B,Cin,H,W] (nchw) or the channels-last map [B,H,W,Cin] (nhwc: the permute
 * to NCHW is folded into the GEMM's addressing).
 */
defineOp({
  name: "fpnMerge",
  inputs: 3,
  maxInputs: 6,
  infer(inputs, attrs) {
    const names = fpnMergeInputNames(attrs);
    if (inputs.length !== names.length) fail(`fpnMerge: expected ${names.length} inputs for these attrs, got ${inputs.length}`);
    const [x, w, coarse] = inputs;
    floatOnly("fpnMerge", x);
    sameDType("fpnMerge", inputs);
    if (x.shape.length !== 4 || w.shape.length !== 4 || coarse.shape.length !== 4)
      fail("fpnMerge: x, weight and coarse must be rank 4");
    const nhwc = attrs.layout === "nhwc";
    if (!nhwc && attrs.layout !== "nchw") fail(`fpnMerge: layout must be nchw or nhwc`);
    const [b, cin, h, wd] = nhwc ? [x.shape[0], x.shape[3], x.shape[1], x.shape[2]] : x.shape;
    const [d, wcin, kh, kw] = w.shape;
    if (wcin !== cin || kh !== 1 || kw !== 1) fail(`fpnMerge: weight [${w.shape}] is not a 1x1 conv from ${cin} channels`);
    if (coarse.shape[0] !== b || coarse.shape[1] !== d) fail(`fpnMerge: coarse map [${coarse.shape}] must be [${b}, ${d}, h, w]`);
    for (const p of inputs.slice(3)) if (p.shape.join() !== String(d)) fail(`fpnMerge: bias and norm parameters must be [${d}]`);
    const g = attrs.groups as number;
    if (!Number.isInteger(g) || g <= 0 || d % g !== 0) fail(`fpnMerge: ${d} channels do not split into ${g} groups`);
    return { shape: [b, d, h, wd], dtype: x.dtype };
  },
  flops: ([, w], out) => 2 * numel(out.shape) * w.shape[1] + 10 * numel(out.shape),
});

// ---- packed gradients ----

/**
 * segment(x 1-D) {offset, shape} -> x[offset : offset + numel(shape)] viewed as `shape`: a piece of
 * a packed backward output (a view, no copy).
 */
defineOp({
  name: "segment",
  inputs: 1,
  infer([x], attrs) {
    const offset = attrs.offset as number;
    const shape = attrNumbers(attrs, "shape");
    if (x.shape.length !== 1) fail(`segment: input must be 1-D, got [${x.shape}]`);
    if (!(Number.isInteger(offset) && offset >= 0 && offset + numel(shape) <= x.shape[0]))
      fail(`segment: [${offset}, ${offset + numel(shape)}) is outside [0, ${x.shape[0]})`);
    return { shape: [...shape], dtype: x.dtype };
  },
  flops: () => 0,
});
