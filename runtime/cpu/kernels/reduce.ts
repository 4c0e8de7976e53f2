// Reductions, softmax and the normalisations. Accumulation is in f64.

import { type Node, numel } from "../../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../tensor.ts";
import { registerKernel } from "./registry.ts";

/** Views `shape` as [outer, reduced, inner] blocks for a sorted axis set; general axes use a gather. */
function reduceAxes(
  x: HostTensor,
  axes: readonly number[],
  init: number,
  step: (acc: number, v: number) => number,
  od: Float64Array,
) {
  const r = x.shape.length;
  const set = new Set(axes.map((a) => (a < 0 ? a + r : a)));
  const keptDims = x.shape.map((d, i) => (set.has(i) ? 1 : d));
  // Strides of the output (with reduced dims of size 1) expressed in input index space.
  const outStrides = new Array<number>(r);
  let acc = 1;
  for (let i = r - 1; i >= 0; i--) {
    outStrides[i] = set.has(i) ? 0 : acc;
    acc *= keptDims[i];
  }
  od.fill(init);
  const xd = x.data;
  const idx = new Array<number>(r).fill(0);
  let o = 0;
  for (let i = 0; i < xd.length; i++) {
    od[o] = step(od[o], xd[i]);
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      o += outStrides[d];
      if (idx[d] < x.shape[d]) break;
      o -= outStrides[d] * x.shape[d];
      idx[d] = 0;
    }
  }
}

function reduceKernel(init: number, step: (acc: number, v: number) => number, finish: (acc: number, count: number) => number) {
  return (node: Node, [x]: readonly HostTensor[]) => {
    const out = hostTensor(node.shape, node.dtype);
    const acc = new Float64Array(numel(node.shape));
    reduceAxes(x, node.attrs.axes as number[], init, step, acc);
    const count = numel(x.shape) / Math.max(1, acc.length);
    for (let i = 0; i < acc.length; i++) out.data[i] = finish(acc[i], count);
    return out;
  };
}

registerKernel(
  "sum",
  reduceKernel(
    0,
    (a, v) => a + v,
    (a) => a,
  ),
);
registerKernel(
  "mean",
  reduceKernel(
    0,
    (a, v) => a + v,
    (a, n) => a / n,
  ),
);
registerKernel(
  "max",
  reduceKernel(
    Number.NEGATIVE_INFINITY,
    (a, v) => (v > a || Number.isNaN(v) ? v : a),
    (a) => a,
  ),
);

/** Calls fn(base, stride, len) for every 1-D lane along `axis`. */
export function forEachLane(shape: readonly number[], axis: number, fn: (base: number, stride: number, len: number) => void) {
  const r = shape.length;
  const a = axis < 0 ? axis + r : axis;
  const len = shape[a];
  let inner = 1;
  for (let i = a + 1; i < r; i++) inner *= shape[i];
  let outer = 1;
  for (let i = 0; i < a; i++) outer *= shape[i];
  for (let o = 0; o < outer; o++) for (let j = 0; j < inner; j++) fn(o * len * inner + j, inner, len);
}

registerKernel("softmax", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  const xd = x.data;
  const od = out.data;
  forEachLane(x.shape, node.attrs.axis as number, (base, stride, len) => {
    let m = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < len; k++) m = Math.max(m, xd[base + k * stride]);
    let s = 0;
    for (let k = 0; k < len; k++) s += Math.exp(xd[base + k * stride] - m);
    for (let k = 0; k < len; k++) od[base + k * stride] = Math.exp(xd[base + k * stride] - m) / s;
  });
  return out;
});

/** Normalises `groups` contiguous runs of `size` elements; `channelOf` maps an offset to its affine index. */
function normalize(
  x: HostTensor,
  out: HostTensor,
  groups: number,
  size: number,
  eps: number,
  weight: HostTensor | undefined,
  bias: HostTensor | undefined,
  channelOf: (g: number, k: number) => number,
) {
  const xd = x.data;
  const od = out.data;
  for (let g = 0; g < groups; g++) {
    const base = g * size;
    let mean = 0;
    for (let k = 0; k < size; k++) mean += xd[base + k];
    mean /= size;
    let v = 0;
    for (let k = 0; k < size; k++) {
      const d = xd[base + k] - mean;
      v += d * d;
    }
    const inv = 1 / Math.sqrt(v / size + eps);
    for (let k = 0; k < size; k++) {
      let y = (xd[base + k] - mean) * inv;
      if (weight) y *= weight.data[channelOf(g, k)];
      if (bias) y += bias.data[channelOf(g, k)];
      od[base + k] = y;
    }
  }
}

registerKernel("layerNorm", (node, [x, w, b]) => {
  const out = hostTensor(node.shape, node.dtype);
  const c = x.shape[x.shape.length - 1];
  normalize(x, out, numel(x.shape) / c, c, node.attrs.eps as number, w, b, (_g, k) => k);
  return out;
});

registerKernel("groupNorm", (node, [x, w, b]) => {
  const out = hostTensor(node.shape, node.dtype);
  const [n, c] = x.shape;
  const groups = node.attrs.groups as number;
  const spatial = numel(x.shape.slice(2));
  const size = (c / groups) * spatial;
  normalize(
    x,
    out,
    n * groups,
    size,
    node.attrs.eps as number,
    w,
    b,
    (g, k) => (g % groups) * (c / groups) + Math.floor(k / spatial),
  );
  return out;
});
