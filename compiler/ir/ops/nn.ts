// Neural-network ops with their own arithmetic: matmul, conv2d, resampling and stochastic masks.

import { numel, type TensorType } from "../types.ts";
import { attrNumbers, broadcastShapes, defineOp, fail, floatOnly, sameDType } from "./registry.ts";

/** The [M, K] x [K, N] view of matmul's operands after the optional transposes. */
export function matmulDims(a: TensorType, b: TensorType, transA: boolean, transB: boolean) {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const ka = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  return { m, ka, kb, n };
}

/** matmul(a, b) over the last two dims, batch dims broadcast; transA/transB transpose first. */
defineOp({
  name: "matmul",
  inputs: 2,
  infer([a, b], attrs) {
    const dtype = sameDType("matmul", [a, b]);
    floatOnly("matmul", a);
    if (a.shape.length < 2 || b.shape.length < 2) {
      fail(`matmul: operands need rank >= 2, got [${a.shape.join(",")}] and [${b.shape.join(",")}]`);
    }
    const { m, ka, kb, n } = matmulDims(a, b, attrs.transA === true, attrs.transB === true);
    if (ka !== kb) fail(`matmul: inner dims differ (${ka} vs ${kb}) for [${a.shape.join(",")}] x [${b.shape.join(",")}]`);
    const batch = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
    return { shape: [...batch, m, n], dtype };
  },
  flops([a, b], out, attrs) {
    const { ka } = matmulDims(a, b, attrs.transA === true, attrs.transB === true);
    return 2 * numel(out.shape) * ka;
  },
});

export function convOutSize(size: number, kernel: number, stride: number, pad: number, dilation: number): number {
  return Math.floor((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1;
}

/** conv2d(x [N,Cin,H,W], w [Cout,Cin/groups,kh,kw], bias? [Cout]). */
defineOp({
  name: "conv2d",
  inputs: 2,
  maxInputs: 3,
  infer(inputs, attrs) {
    const [x, w, bias] = inputs;
    const dtype = sameDType("conv2d", inputs);
    floatOnly("conv2d", x);
    if (x.shape.length !== 4) fail(`conv2d: input must be [N,C,H,W], got [${x.shape.join(",")}]`);
    if (w.shape.length !== 4) fail(`conv2d: weight must be [Cout,Cin/groups,kh,kw], got [${w.shape.join(",")}]`);
    const [stride, padding, dilation] = ["stride", "padding", "dilation"].map((k) => attrNumbers(attrs, k));
    const groups = attrs.groups as number;
    const [n, cin, h, wd] = x.shape;
    const [cout, cpg, kh, kw] = w.shape;
    if (cin % groups !== 0 || cout % groups !== 0) fail(`conv2d: channels ${cin}->${cout} do not split into ${groups} groups`);
    if (cpg !== cin / groups) fail(`conv2d: weight expects ${cpg * groups} input channels, input has ${cin}`);
    if (bias && (bias.shape.length !== 1 || bias.shape[0] !== cout)) fail(`conv2d: bias must be [${cout}]`);
    const oh = convOutSize(h, kh, stride[0], padding[0], dilation[0]);
    const ow = convOutSize(wd, kw, stride[1], padding[1], dilation[1]);
    if (oh <= 0 || ow <= 0) fail(`conv2d: a ${kh}x${kw} kernel does not fit a ${h}x${wd} input (output ${oh}x${ow})`);
    return { shape: [n, cout, oh, ow], dtype };
  },
  flops: ([, w], out) => 2 * numel(out.shape) * w.shape[1] * w.shape[2] * w.shape[3],
});

/** upsample(x [N,C,H,W]) to size [oh, ow]; mode nearest (torch's floor rule) or bilinear. */
defineOp({
  name: "upsample",
  inputs: 1,
  infer([x], attrs) {
    floatOnly("upsample", x);
    if (x.shape.length !== 4) fail(`upsample: input must be [N,C,H,W], got [${x.shape.join(",")}]`);
    if (attrs.mode !== "nearest" && attrs.mode !== "bilinear") fail(`upsample: mode must be nearest or bilinear`);
    const [oh, ow] = attrNumbers(attrs, "size");
    if (!(oh > 0 && ow > 0)) fail(`upsample: bad output size ${oh}x${ow}`);
    return { shape: [x.shape[0], x.shape[1], oh, ow], dtype: x.dtype };
  },
  flops: (_i, out, attrs) => (attrs.mode === "bilinear" ? 8 : 0) * numel(out.shape),
});

/** pixelShuffle(x [N, C*r*r, H, W]) -> [N, C, H*r, W*r] (torch layout). */
defineOp({
  name: "pixelShuffle",
  inputs: 1,
  infer([x], attrs) {
    const r = attrs.factor as number;
    if (x.shape.length !== 4) fail(`pixelShuffle: input must be [N,C,H,W], got [${x.shape.join(",")}]`);
    const [n, c, h, w] = x.shape;
    if (c % (r * r) !== 0) fail(`pixelShuffle: ${c} channels are not divisible by ${r}^2`);
    return { shape: [n, c / (r * r), h * r, w * r], dtype: x.dtype };
  },
  flops: () => 0,
});

/**
 * Stochastic masks, deterministic given the run's seed: element i of a dropout with stream s is kept
 * when hash(seed, s, i) >= p * 2^32 (dropPath: one draw per sample along axis 0). Kept values are
 * scaled by 1/(1-p). Only traced in training mode; at eval the DSL emits nothing.
 */
for (const name of ["dropout", "dropPath"]) {
  defineOp({
    name,
    inputs: 1,
    infer([x], attrs) {
      floatOnly(name, x);
      const p = attrs.p as number;
      if (!(p >= 0 && p < 1)) fail(`${name}: p must be in [0, 1), got ${p}`);
      return x;
    },
    flops: ([x]) => numel(x.shape),
  });
}
