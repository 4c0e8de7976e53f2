// Pointwise ops with numpy broadcasting.

import { numel } from "../../../compiler/ir/index.ts";
import { erf, gelu, sigmoid } from "../math.ts";
import { broadcastStrides, type HostTensor, hostTensor } from "../tensor.ts";
import { registerKernel } from "./registry.ts";

const unary: Record<string, (x: number, attr: string) => number> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs,
  sigmoid,
  relu: (x) => (x > 0 ? x : 0),
  tanh: Math.tanh,
  erf,
  gelu,
};

for (const [op, f] of Object.entries(unary)) {
  registerKernel(op, (node, [x]) => {
    const out = hostTensor(node.shape, node.dtype);
    const a = String(node.attrs.approximate ?? "none");
    const xd = x.data;
    const od = out.data;
    for (let i = 0; i < od.length; i++) od[i] = f(xd[i], a);
    return out;
  });
}

/** Visits every output index with the matching offsets into up to three broadcast inputs. */
export function forEachBroadcast(
  outShape: readonly number[],
  inputs: readonly HostTensor[],
  fn: (o: number, i0: number, i1: number, i2: number) => void,
): void {
  const n = numel(outShape);
  const r = outShape.length;
  const st = inputs.map((t) => broadcastStrides(t.shape, outShape));
  while (st.length < 3) st.push(new Array(r).fill(0));
  const [s0, s1, s2] = st;
  const idx = new Array<number>(r).fill(0);
  let i0 = 0;
  let i1 = 0;
  let i2 = 0;
  for (let o = 0; o < n; o++) {
    fn(o, i0, i1, i2);
    for (let d = r - 1; d >= 0; d--) {
      idx[d]++;
      i0 += s0[d];
      i1 += s1[d];
      i2 += s2[d];
      if (idx[d] < outShape[d]) break;
      i0 -= s0[d] * outShape[d];
      i1 -= s1[d] * outShape[d];
      i2 -= s2[d] * outShape[d];
      idx[d] = 0;
    }
  }
}

const binary: Record<string, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: Math.pow,
  maximum: (a, b) => (a > b || Number.isNaN(a) ? a : b),
  minimum: (a, b) => (a < b || Number.isNaN(a) ? a : b),
  eq: (a, b) => (a === b ? 1 : 0),
  lt: (a, b) => (a < b ? 1 : 0),
  le: (a, b) => (a <= b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
};

for (const [op, f] of Object.entries(binary)) {
  registerKernel(op, (node, [a, b]) => {
    const out = hostTensor(node.shape, node.dtype);
    const ad = a.data;
    const bd = b.data;
    const od = out.data;
    if (a.data.length === od.length && b.data.length === od.length) {
      for (let i = 0; i < od.length; i++) od[i] = f(ad[i], bd[i]);
    } else if (b.data.length === 1 && a.data.length === od.length) {
      const bv = bd[0];
      for (let i = 0; i < od.length; i++) od[i] = f(ad[i], bv);
    } else {
      forEachBroadcast(node.shape, [a, b], (o, i, j) => {
        od[o] = f(ad[i], bd[j]);
      });
    }
    return out;
  });
}

registerKernel("where", (node, [c, a, b]) => {
  const out = hostTensor(node.shape, node.dtype);
  const cd = c.data;
  const ad = a.data;
  const bd = b.data;
  const od = out.data;
  forEachBroadcast(node.shape, [c, a, b], (o, i, j, k) => {
    od[o] = cd[i] !== 0 ? ad[j] : bd[k];
  });
  return out;
});

registerKernel("cast", (node, [x]) => {
  if (node.dtype === "i32") {
    const out = hostTensor(node.shape, "i32");
    for (let i = 0; i < x.data.length; i++) out.data[i] = Math.trunc(x.data[i]);
    return out;
  }
  return hostTensor(node.shape, node.dtype, Float32Array.from(x.data));
});
