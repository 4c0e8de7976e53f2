// CPU reference of fpnMerge (compiler/ir/ops/fused.ts): the lateral 1x1 conv as a GEMM over pixels
// (x read NCHW or channels-last), GroupNorm with f64 statistics, then the nearest-upsampled coarser
// map added by index.

import { fpnMergeInputNames } from "../../../compiler/ir/ops/fused.ts";
import { hostTensor } from "../tensor.ts";
import { nearestIndex } from "./nn.ts";
import { registerKernel } from "./registry.ts";

registerKernel("fpnMerge", (node, inputs) => {
  const names = fpnMergeInputNames(node.attrs);
  const get = (name: string) => inputs[names.indexOf(name)]?.data;
  const [x, w, coarse] = inputs;
  const nhwc = node.attrs.layout === "nhwc";
  const [bs, dch, h, wd] = node.shape;
  const cin = w.shape[1];
  const [ch, cw] = [coarse.shape[2], coarse.shape[3]];
  const groups = node.attrs.groups as number;
  const eps = node.attrs.eps as number;
  const bias = get("bias");
  const gw = get("normWeight");
  const gb = get("normBias");
  const hw = h * wd;
  const out = hostTensor(node.shape, node.dtype);
  const y = new Float64Array(dch * hw);
  const ys = Int32Array.from({ length: h }, (_, i) => nearestIndex(i, ch, h));
  const xs = Int32Array.from({ length: wd }, (_, i) => nearestIndex(i, cw, wd));
  const xv = new Float64Array(cin);
  for (let b = 0; b < bs; b++) {
    for (let p = 0; p < hw; p++) {
      for (let ci = 0; ci < cin; ci++) xv[ci] = nhwc ? x.data[(b * hw + p) * cin + ci] : x.data[(b * cin + ci) * hw + p];
      for (let co = 0; co < dch; co++) {
        let acc = bias ? bias[co] : 0;
        const wo = co * cin;
        for (let ci = 0; ci < cin; ci++) acc += w.data[wo + ci] * xv[ci];
        y[co * hw + p] = acc;
      }
    }
    const cpg = dch / groups;
    for (let g = 0; g < groups; g++) {
      const start = g * cpg * hw;
      const size = cpg * hw;
      let mean = 0;
      for (let i = 0; i < size; i++) mean += y[start + i];
      mean /= size;
      let v = 0;
      for (let i = 0; i < size; i++) v += (y[start + i] - mean) ** 2;
      const inv = 1 / Math.sqrt(v / size + eps);
      for (let co = g * cpg; co < (g + 1) * cpg; co++) {
        const base = (b * dch + co) * hw;
        for (let r = 0; r < h; r++)
          for (let cc = 0; cc < wd; cc++) {
            let val = (y[co * hw + r * wd + cc] - mean) * inv;
            if (gw) val *= gw[co];
            if (gb) val += gb[co];
            out.data[base + r * wd + cc] = val + coarse.data[((b * dch + co) * ch + ys[r]) * cw + xs[cc]];
          }
      }
    }
  }
  return out;
});
