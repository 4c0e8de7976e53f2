// Data movement: reshape, permute, roll, slice, concat, pad, take, broadcastTo. Each is a strided
// copy done row by row (runs contiguous on both sides are TypedArray.set copies).

import { formatLoc, numel, UserError } from "../../../compiler/ir/index.ts";
import { broadcastStrides, hostTensor, stridesOf } from "../tensor.ts";
import { registerKernel } from "./registry.ts";
import { copyStrided, gatherInto } from "./rows.ts";

/** A view: the output shares the input's storage (values are never mutated after a kernel returns). */
registerKernel("reshape", (node, [x]) => hostTensor(node.shape, node.dtype, x.data));

registerKernel("permute", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  const xs = stridesOf(x.shape);
  const perm = (node.attrs.perm as number[]).map((p) => (p < 0 ? p + x.shape.length : p));
  gatherInto(
    out.data,
    x.data,
    node.shape,
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
  gatherInto(
    out.data,
    x.data,
    node.shape,
    steps.map((st, i) => st * xs[i]),
    offset,
  );
  return out;
});

registerKernel("broadcastTo", (node, [x]) => {
  const out = hostTensor(node.shape, node.dtype);
  gatherInto(out.data, x.data, node.shape, broadcastStrides(x.shape, node.shape));
  return out;
});

/**
 * torch.roll: out[(i + shift) mod n] = x[i] on each rolled axis. With R rolled axes the output is
 * 2^R blocks (per axis: the part before the shift and the part after), each a plain strided copy.
 */
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
  const rolled = shift.map((s, d) => ((s % x.shape[d]) + x.shape[d]) % x.shape[d]);
  const live = [...rolled.keys()].filter((d) => rolled[d] !== 0);
  for (let mask = 0; mask < 1 << live.length; mask++) {
    const shape = [...x.shape];
    let dstBase = 0;
    let srcBase = 0;
    live.forEach((d, bit) => {
      const n = x.shape[d];
      const s = rolled[d];
      // bit 0: outputs s..n-1 come from inputs 0..n-s-1; bit 1: outputs 0..s-1 from inputs n-s..n-1.
      const wrapped = (mask >> bit) & 1;
      shape[d] = wrapped ? s : n - s;
      dstBase += (wrapped ? 0 : s) * xs[d];
      srcBase += (wrapped ? n - s : 0) * xs[d];
    });
    copyStrided(out.data, x.data, shape, xs, xs, dstBase, srcBase);
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
  const base = os.reduce((acc, s, d) => acc + pads[2 * d] * s, 0);
  copyStrided(out.data, x.data, x.shape, os, stridesOf(x.shape), base, 0);
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
  for (let j = 0; j < k; j++) {
    const t = index.data[j];
    if (t < 0 || t >= n) throw new UserError(`take: index ${t} is out of range for a dim of size ${n}`, formatLoc(node.loc));
  }
  const [xd, id, od] = [x.data, index.data, out.data];
  if (inner < 16) {
    // Short rows: a plain loop beats a subarray + set per row.
    for (let o = 0; o < outer; o++)
      for (let j = 0; j < k; j++) {
        const src = (o * n + id[j]) * inner;
        const dst = (o * k + j) * inner;
        for (let t = 0; t < inner; t++) od[dst + t] = xd[src + t];
      }
    return out;
  }
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < k; j++) {
      const src = (o * n + index.data[j]) * inner;
      out.data.set(x.data.subarray(src, src + inner), (o * k + j) * inner);
    }
  }
  return out;
});
