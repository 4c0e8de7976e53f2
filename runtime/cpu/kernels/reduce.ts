// Reductions, softmax and the normalisations. Accumulation is in f64.

import { type Node, numel } from "../../../compiler/ir/index.ts";
import { type HostTensor, hostTensor, stridesOf } from "../tensor.ts";
import { registerKernel } from "./registry.ts";
import { rowPlan } from "./rows.ts";

type ReduceKind = "sum" | "max";

/**
 * Reduces x over `axes` into `acc` (f64, pre-filled), row by row. Each output receives its inputs
 * in increasing input-index order, so sums are those of the plain element-order loop.
 */
function reduceAxes(x: HostTensor, axes: readonly number[], kind: ReduceKind, acc: Float64Array): void {
  const r = x.shape.length;
  const set = new Set(axes.map((a) => (a < 0 ? a + r : a)));
  // Strides of the output (with reduced dims of size 1) expressed in input index space.
  const outStrides = new Array<number>(r);
  let n = 1;
  for (let i = r - 1; i >= 0; i--) {
    outStrides[i] = set.has(i) ? 0 : n;
    if (!set.has(i)) n *= x.shape[i];
  }
  const plan = rowPlan(x.shape, [stridesOf(x.shape), outStrides]);
  const [sx, so] = plan.inner;
  const [xStarts, oStarts] = plan.starts;
  const xd = x.data;
  const len = plan.len;
  for (let row = 0; row < plan.rows; row++) {
    const xi = xStarts[row];
    const oi = oStarts[row];
    if (so === 0) {
      let a = acc[oi];
      if (kind === "sum") for (let t = 0; t < len; t++) a += xd[xi + t * sx];
      else
        for (let t = 0; t < len; t++) {
          const v = xd[xi + t * sx];
          if (v > a || Number.isNaN(v)) a = v;
        }
      acc[oi] = a;
    } else if (kind === "sum") {
      if (so === 1 && sx === 1) for (let t = 0; t < len; t++) acc[oi + t] += xd[xi + t];
      else for (let t = 0; t < len; t++) acc[oi + t * so] += xd[xi + t * sx];
    } else {
      for (let t = 0; t < len; t++) {
        const v = xd[xi + t * sx];
        const a = acc[oi + t * so];
        if (v > a || Number.isNaN(v)) acc[oi + t * so] = v;
      }
    }
  }
}

function reduceKernel(kind: ReduceKind, init: number, finish: (acc: number, count: number) => number) {
  return (node: Node, [x]: readonly HostTensor[]) => {
    const out = hostTensor(node.shape, node.dtype);
    const acc = new Float64Array(numel(node.shape)).fill(init);
    reduceAxes(x, node.attrs.axes as number[], kind, acc);
    const count = numel(x.shape) / Math.max(1, acc.length);
    for (let i = 0; i < acc.length; i++) out.data[i] = finish(acc[i], count);
    return out;
  };
}

registerKernel(
  "sum",
  reduceKernel("sum", 0, (a) => a),
);
registerKernel(
  "mean",
  reduceKernel("sum", 0, (a, n) => a / n),
);
registerKernel(
  "max",
  reduceKernel("max", Number.NEGATIVE_INFINITY, (a) => a),
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
  const r = x.shape.length;
  const axis = (node.attrs.axis as number) < 0 ? (node.attrs.axis as number) + r : (node.attrs.axis as number);
  const e = new Float64Array(x.shape[axis]);
  forEachLane(x.shape, axis, (base, stride, len) => {
    let m = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < len; k++) m = Math.max(m, xd[base + k * stride]);
    let s = 0;
    for (let k = 0; k < len; k++) s += e[k] = Math.exp(xd[base + k * stride] - m);
    for (let k = 0; k < len; k++) od[base + k * stride] = e[k] / s;
  });
  return out;
});

/** Mean and 1/sqrt(variance + eps) of x[base .. base+size), two passes in f64. */
function moments(xd: HostTensor["data"], base: number, size: number, eps: number): [number, number] {
  let mean = 0;
  for (let k = 0; k < size; k++) mean += xd[base + k];
  mean /= size;
  let v = 0;
  for (let k = 0; k < size; k++) {
    const d = xd[base + k] - mean;
    v += d * d;
  }
  return [mean, 1 / Math.sqrt(v / size + eps)];
}

registerKernel("layerNorm", (node, [x, w, b]) => {
  const out = hostTensor(node.shape, node.dtype);
  const c = x.shape[x.shape.length - 1];
  const eps = node.attrs.eps as number;
  const [xd, od] = [x.data, out.data];
  const [wd, bd] = [w?.data, b?.data];
  for (let base = 0; base < xd.length; base += c) {
    const [mean, inv] = moments(xd, base, c, eps);
    for (let k = 0; k < c; k++) {
      let y = (xd[base + k] - mean) * inv;
      if (wd) y *= wd[k];
      if (bd) y += bd[k];
      od[base + k] = y;
    }
  }
  return out;
});

registerKernel("groupNorm", (node, [x, w, b]) => {
  const out = hostTensor(node.shape, node.dtype);
  const [n, c] = x.shape;
  const groups = node.attrs.groups as number;
  const eps = node.attrs.eps as number;
  const spatial = numel(x.shape.slice(2));
  const cpg = c / groups;
  const size = cpg * spatial;
  const [xd, od] = [x.data, out.data];
  const [wd, bd] = [w?.data, b?.data];
  for (let g = 0; g < n * groups; g++) {
    const base = g * size;
    const [mean, inv] = moments(xd, base, size, eps);
    for (let ch = 0; ch < cpg; ch++) {
      const channel = (g % groups) * cpg + ch;
      const start = base + ch * spatial;
      for (let k = start; k < start + spatial; k++) {
        let y = (xd[k] - mean) * inv;
        if (wd) y *= wd[channel];
        if (bd) y += bd[channel];
        od[k] = y;
      }
    }
  }
  return out;
});
