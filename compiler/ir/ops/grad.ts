// Ops that exist for backward passes (emitted by compiler/autodiff, never by the DSL): the adjoints
// of conv2d, upsample, take and the normalisations. Each has a CPU kernel (runtime/cpu/kernels/grad.ts)
// and, later, a GPU kernel; none is differentiable itself (no second-order gradients yet).

import { numel } from "../types.ts";
import { convOutSize } from "./nn.ts";
import { attrNumbers, defineOp, fail, floatOnly, sameDType } from "./registry.ts";

function convAttrs(attrs: { readonly [k: string]: unknown }) {
  const [stride, padding, dilation] = ["stride", "padding", "dilation"].map((k) => attrNumbers(attrs as never, k));
  return { stride, padding, dilation, groups: attrs.groups as number };
}

/**
 * conv2dBackwardInput(dy [N,Cout,OH,OW], w [Cout,Cin/groups,kh,kw]) {stride, padding, dilation, groups,
 * inputSize: [H, W]} -> dx [N, Cin, H, W]: the adjoint of conv2d in its input (a transposed convolution).
 */
defineOp({
  name: "conv2dBackwardInput",
  inputs: 2,
  infer([dy, w], attrs) {
    const dtype = sameDType("conv2dBackwardInput", [dy, w]);
    floatOnly("conv2dBackwardInput", dy);
    if (dy.shape.length !== 4 || w.shape.length !== 4) fail("conv2dBackwardInput: dy and w must be rank 4");
    const { stride, padding, dilation, groups } = convAttrs(attrs);
    const [h, wd] = attrNumbers(attrs, "inputSize");
    const [n, cout, oh, ow] = dy.shape;
    const [wcout, cpg, kh, kw] = w.shape;
    if (wcout !== cout) fail(`conv2dBackwardInput: dy has ${cout} channels, weight ${wcout}`);
    if (
      convOutSize(h, kh, stride[0], padding[0], dilation[0]) !== oh ||
      convOutSize(wd, kw, stride[1], padding[1], dilation[1]) !== ow
    ) {
      fail(`conv2dBackwardInput: dy ${oh}x${ow} is not the conv output of a ${h}x${wd} input`);
    }
    return { shape: [n, cpg * groups, h, wd], dtype };
  },
  flops: ([dy, w]) => 2 * numel(dy.shape) * w.shape[1] * w.shape[2] * w.shape[3],
});

/**
 * conv2dBackwardWeight(x [N,Cin,H,W], dy [N,Cout,OH,OW]) {stride, padding, dilation, groups,
 * kernelSize: [kh, kw]} -> dw [Cout, Cin/groups, kh, kw].
 */
defineOp({
  name: "conv2dBackwardWeight",
  inputs: 2,
  infer([x, dy], attrs) {
    const dtype = sameDType("conv2dBackwardWeight", [x, dy]);
    floatOnly("conv2dBackwardWeight", x);
    if (dy.shape.length !== 4 || x.shape.length !== 4) fail("conv2dBackwardWeight: x and dy must be rank 4");
    const { stride, padding, dilation, groups } = convAttrs(attrs);
    const [kh, kw] = attrNumbers(attrs, "kernelSize");
    const [n, cin, h, wd] = x.shape;
    const [dn, cout, oh, ow] = dy.shape;
    if (dn !== n) fail(`conv2dBackwardWeight: batch ${n} vs ${dn}`);
    if (cin % groups !== 0 || cout % groups !== 0) fail(`conv2dBackwardWeight: channels do not split into ${groups} groups`);
    if (
      convOutSize(h, kh, stride[0], padding[0], dilation[0]) !== oh ||
      convOutSize(wd, kw, stride[1], padding[1], dilation[1]) !== ow
    ) {
      fail(`conv2dBackwardWeight: dy ${oh}x${ow} is not the conv output of a ${h}x${wd} input`);
    }
    return { shape: [cout, cin / groups, kh, kw], dtype };
  },
  flops: ([, dy], out) => 2 * numel(dy.shape) * out.shape[1] * out.shape[2] * out.shape[3],
});

/** upsampleBackward(dy [N,C,OH,OW]) {inputSize: [H, W], mode, alignCorners} -> dx [N,C,H,W] (scatter-add). */
defineOp({
  name: "upsampleBackward",
  inputs: 1,
  infer([dy], attrs) {
    floatOnly("upsampleBackward", dy);
    if (dy.shape.length !== 4) fail("upsampleBackward: dy must be [N,C,H,W]");
    if (attrs.mode !== "nearest" && attrs.mode !== "bilinear") fail("upsampleBackward: mode must be nearest or bilinear");
    const [h, w] = attrNumbers(attrs, "inputSize");
    if (!(h > 0 && w > 0)) fail(`upsampleBackward: bad input size ${h}x${w}`);
    return { shape: [dy.shape[0], dy.shape[1], h, w], dtype: dy.dtype };
  },
  flops: ([dy], _o, attrs) => (attrs.mode === "bilinear" ? 8 : 1) * numel(dy.shape),
});

/**
 * takeBackward(dy, index i32) {axis, size} -> dx: the adjoint of take (numpy.take) along `axis`:
 * dx[..., index[j], ...] += dy[..., j, ...], dx.shape[axis] = size. Repeated indices accumulate.
 */
defineOp({
  name: "takeBackward",
  inputs: 2,
  infer([dy, index], attrs) {
    floatOnly("takeBackward", dy);
    if (index.dtype !== "i32") fail(`takeBackward: index must be i32, got ${index.dtype}`);
    const k = index.shape.length;
    const axis = attrs.axis as number;
    const size = attrs.size as number;
    if (!Number.isInteger(axis) || axis < 0 || axis + k > dy.shape.length) fail(`takeBackward: bad axis ${axis}`);
    if (!(Number.isInteger(size) && size > 0)) fail(`takeBackward: bad size ${size}`);
    for (let i = 0; i < k; i++) {
      if (dy.shape[axis + i] !== index.shape[i])
        fail(`takeBackward: dy [${dy.shape}] does not hold index [${index.shape}] at ${axis}`);
    }
    return { shape: [...dy.shape.slice(0, axis), size, ...dy.shape.slice(axis + k)], dtype: dy.dtype };
  },
  flops: ([dy]) => numel(dy.shape),
});

/**
 * layerNormBackward(x, dy, weight?) {eps} -> dx, for y = layerNorm(x, weight, bias) over the last dim:
 * with xhat = (x - mean) * rstd and g = dy * weight, dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
 * One op so every backend can recompute the statistics in f32 (and fuse the row reductions).
 */
defineOp({
  name: "layerNormBackward",
  inputs: 2,
  maxInputs: 3,
  infer(inputs) {
    const [x, dy, w] = inputs;
    floatOnly("layerNormBackward", x);
    sameDType("layerNormBackward", inputs);
    if (x.shape.join() !== dy.shape.join()) fail(`layerNormBackward: x [${x.shape}] and dy [${dy.shape}] differ`);
    const c = x.shape[x.shape.length - 1];
    if (w && (w.shape.length !== 1 || w.shape[0] !== c)) fail(`layerNormBackward: weight must be [${c}]`);
    return x;
  },
  flops: ([x]) => 12 * numel(x.shape),
});

/** groupNormBackward(x, dy, weight?) {groups, eps} -> dx; the groupNorm analogue of layerNormBackward. */
defineOp({
  name: "groupNormBackward",
  inputs: 2,
  maxInputs: 3,
  infer(inputs, attrs) {
    const [x, dy, w] = inputs;
    floatOnly("groupNormBackward", x);
    sameDType("groupNormBackward", inputs);
    if (x.shape.join() !== dy.shape.join()) fail(`groupNormBackward: x [${x.shape}] and dy [${dy.shape}] differ`);
    if (x.shape.length < 2) fail("groupNormBackward: x must be [N, C, ...]");
    const c = x.shape[1];
    const g = attrs.groups as number;
    if (!Number.isInteger(g) || g <= 0 || c % g !== 0) fail(`groupNormBackward: ${c} channels do not split into ${g} groups`);
    if (w && (w.shape.length !== 1 || w.shape[0] !== c)) fail(`groupNormBackward: weight must be [${c}]`);
    return x;
  },
  flops: ([x]) => 12 * numel(x.shape),
});
