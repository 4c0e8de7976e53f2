// Data movement: reshape, permute, roll, slice, concat, pad, take, broadcastTo.

import { formatLoc, numel, UserError } from "../../../compiler/ir/index.ts";
import { type HostTensor, hostTensor, stridesOf } from "../tensor.ts";
import { forEachBroadcast } from "./elementwise.ts";
import { registerKernel } from "./registry.ts";

registerKernel("reshape", (node, [x]) => hostTensor(node.shape, node.dtype, x.data.slice()));

/** out[idx] = x[src(idx)] where src is an affine map given by per-output-dim input strides. */
function gatherStrided(node: { shape: readonly number[] }, x: HostTensor, out: HostTensor, strides: number[], offset = 0) {
  const r = node.shape.length;
  const idx = new Array<number>(r).fill(0);
  const od = out.data;
  const xd = x.data;
  let src = offset;
  for (let o = 0; o < od.length; o++) {
    od[o] = xd[src];
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      src += strides[d];
      if (idx[d] < node.shape[d]) break;
      src -= strides[d] * node.shape[d];
      idx[d] = 0;
    }
  }
}

registerKernel("permute", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  const xs = stridesOf(x.shape);
  const perm = (node.attrs.perm as number[]).map((p) => (p < 0 ? p + x.shape.length : p));
  gatherStrided(
    node,
    x,
    out,
    perm.map((p) => xs[p]),
  );
  return out;
});

registerKernel("slice", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  const xs = stridesOf(x.shape);
  const starts = node.attrs.starts as number[];
  const steps = node.attrs.steps as number[];
  const offset = starts.reduce((acc, s, i) => acc + s * xs[i], 0);
  gatherStrided(
    node,
    x,
    out,
    steps.map((st, i) => st * xs[i]),
    offset,
  );
  return out;
});

registerKernel("broadcastTo", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  const od = out.data;
  const xd = x.data;
  forEachBroadcast(node.shape, [x], (o, i) => {
    od[o] = xd[i];
  });
  return out;
});

registerKernel("roll", (node, [x]) => {
  const r = x.shape.length;
  const shift = new Array<number>(r).fill(0);
  const axes = node.attrs.axes as number[];
  (node.attrs.shifts as number[]).forEach((s, i) => {
    const a = axes[i] < 0 ? axes[i] + r : axes[i];
    shift[a] += s;
  });
  const out = hostTensor(node.shape, node.dtype);
  const xs = stridesOf(x.shape);
  const idx = new Array<number>(r).fill(0);
  for (let i = 0; i < x.data.length; i++) {
    let o = 0;
    for (let d = 0; d < r; d++) {
      const n = x.shape[d];
      o += ((((idx[d] + shift[d]) % n) + n) % n) * xs[d];
    }
    out.data[o] = x.data[i];
    for (let d = r - 1; d >= 0; d--) {
      if (++idx[d] < x.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
});

registerKernel("concat", (node, inputs) => {
  const out = hostTensor(node.shape, node.dtype);
  const r = node.shape.length;
  const axis = (node.attrs.axis as number) < 0 ? (node.attrs.axis as number) + r : (node.attrs.axis as number);
  const outer = numel(node.shape.slice(0, axis));
  const innerOut = numel(node.shape.slice(axis));
  let off = 0;
  for (const t of inputs) {
    const inner = numel(t.shape.slice(axis));
    for (let o = 0; o < outer; o++) out.data.set(t.data.subarray(o * inner, (o + 1) * inner), o * innerOut + off);
    off += inner;
  }
  return out;
});

registerKernel("pad", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  out.data.fill(node.attrs.value as number);
  const pads = node.attrs.pads as number[];
  const os = stridesOf(node.shape);
  const r = x.shape.length;
  const idx = new Array<number>(r).fill(0);
  for (let i = 0; i < x.data.length; i++) {
    let o = 0;
    for (let d = 0; d < r; d++) o += (idx[d] + pads[2 * d]) * os[d];
    out.data[o] = x.data[i];
    for (let d = r - 1; d >= 0; d--) {
      if (++idx[d] < x.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
});

registerKernel("take", (node, [x, index]) => {
  const out = hostTensor(node.shape, node.dtype);
  const r = x.shape.length;
  const axis = (node.attrs.axis as number) < 0 ? (node.attrs.axis as number) + r : (node.attrs.axis as number);
  const outer = numel(x.shape.slice(0, axis));
  const inner = numel(x.shape.slice(axis + 1));
  const n = x.shape[axis];
  const k = index.data.length;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < k; j++) {
      const t = index.data[j];
      if (t < 0 || t >= n) {
        throw new UserError(`take: index ${t} is out of range for a dim of size ${n}`, formatLoc(node.loc));
      }
      const src = (o * n + t) * inner;
      out.data.set(x.data.subarray(src, src + inner), (o * k + j) * inner);
    }
  }
  return out;
});
