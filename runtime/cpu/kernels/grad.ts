// Kernels of the backward-only ops (compiler/ir/ops/grad.ts): conv2d's adjoints, upsample's and
// take's scatter-adds, and the normalisation backward passes. Accumulation is in f64.

import { numel } from "../../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../tensor.ts";
import { linearSource, nearestIndex } from "./nn.ts";
import { registerKernel } from "./registry.ts";

interface ConvGeometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  cpg: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  stride: number[];
  padding: number[];
  dilation: number[];
  groups: number;
}

/** Visits every (input pixel, weight tap, output pixel) triple of a conv2d, as flat offsets. */
function forEachTap(geo: ConvGeometry, fn: (xi: number, wi: number, yi: number) => void): void {
  const { n, cin, h, w, cout, cpg, kh, kw, oh, ow, stride, padding, dilation, groups } = geo;
  const opg = cout / groups;
  for (let b = 0; b < n; b++)
    for (let co = 0; co < cout; co++) {
      const g = Math.floor(co / opg);
      for (let ci = 0; ci < cpg; ci++) {
        const xc = (b * cin + g * cpg + ci) * h * w;
        for (let ky = 0; ky < kh; ky++)
          for (let kx = 0; kx < kw; kx++) {
            const wi = ((co * cpg + ci) * kh + ky) * kw + kx;
            for (let oy = 0; oy < oh; oy++) {
              const iy = oy * stride[0] - padding[0] + ky * dilation[0];
              if (iy < 0 || iy >= h) continue;
              for (let ox = 0; ox < ow; ox++) {
                const ix = ox * stride[1] - padding[1] + kx * dilation[1];
                if (ix < 0 || ix >= w) continue;
                fn(xc + iy * w + ix, wi, ((b * cout + co) * oh + oy) * ow + ox);
              }
            }
          }
      }
    }
}

function geometry(
  attrs: { readonly [k: string]: unknown },
  xShape: readonly number[],
  wShape: readonly number[],
  dyShape: readonly number[],
) {
  const [n, cin, h, w] = xShape;
  const [cout, cpg, kh, kw] = wShape;
  return {
    n,
    cin,
    h,
    w,
    cout,
    cpg,
    kh,
    kw,
    oh: dyShape[2],
    ow: dyShape[3],
    stride: attrs.stride as number[],
    padding: attrs.padding as number[],
    dilation: attrs.dilation as number[],
    groups: attrs.groups as number,
  };
}

registerKernel("conv2dBackwardInput", (node, [dy, w]) => {
  const acc = new Float64Array(numel(node.shape));
  const wd = w.data;
  const dd = dy.data;
  forEachTap(geometry(node.attrs, node.shape, w.shape, dy.shape), (xi, wi, yi) => {
    acc[xi] += wd[wi] * dd[yi];
  });
  return hostTensor(node.shape, node.dtype, Float32Array.from(acc));
});

registerKernel("conv2dBackwardWeight", (node, [x, dy]) => {
  const acc = new Float64Array(numel(node.shape));
  const xd = x.data;
  const dd = dy.data;
  forEachTap(geometry(node.attrs, x.shape, node.shape, dy.shape), (xi, wi, yi) => {
    acc[wi] += xd[xi] * dd[yi];
  });
  return hostTensor(node.shape, node.dtype, Float32Array.from(acc));
});

registerKernel("upsampleBackward", (node, [dy]) => {
  const [n, c, h, w] = node.shape;
  const [, , oh, ow] = dy.shape;
  const bilinear = node.attrs.mode === "bilinear";
  const align = node.attrs.alignCorners === true;
  const src = (d: number, inSize: number, outSize: number): [number, number, number] =>
    bilinear ? linearSource(d, inSize, outSize, align) : [nearestIndex(d, inSize, outSize), 0, 0];
  const ys = Array.from({ length: oh }, (_, y) => src(y, h, oh));
  const xs = Array.from({ length: ow }, (_, x) => src(x, w, ow));
  const acc = new Float64Array(numel(node.shape));
  const dd = dy.data;
  for (let p = 0; p < n * c; p++) {
    const base = p * h * w;
    for (let y = 0; y < oh; y++) {
      const [y0, y1, ly] = ys[y];
      for (let x = 0; x < ow; x++) {
        const g = dd[(p * oh + y) * ow + x];
        const [x0, x1, lx] = xs[x];
        if (!bilinear) {
          acc[base + y0 * w + x0] += g;
          continue;
        }
        acc[base + y0 * w + x0] += g * (1 - ly) * (1 - lx);
        acc[base + y0 * w + x1] += g * (1 - ly) * lx;
        acc[base + y1 * w + x0] += g * ly * (1 - lx);
        acc[base + y1 * w + x1] += g * ly * lx;
      }
    }
  }
  return hostTensor(node.shape, node.dtype, Float32Array.from(acc));
});

registerKernel("takeBackward", (node, [dy, index]) => {
  const axis = node.attrs.axis as number;
  const size = node.attrs.size as number;
  const outer = numel(dy.shape.slice(0, axis));
  const k = index.data.length;
  const inner = numel(dy.shape.slice(axis + index.shape.length));
  const acc = new Float64Array(numel(node.shape));
  const dd = dy.data;
  for (let o = 0; o < outer; o++)
    for (let j = 0; j < k; j++) {
      const t = index.data[j];
      if (t < 0 || t >= size) throw new Error(`takeBackward: index ${t} is out of range for a dim of size ${size}`);
      const dst = (o * size + t) * inner;
      const src = (o * k + j) * inner;
      for (let i = 0; i < inner; i++) acc[dst + i] += dd[src + i];
    }
  return hostTensor(node.shape, node.dtype, Float32Array.from(acc));
});

/**
 * dx for `groups` runs of `size` elements normalised together; `channelOf` maps (run, k) to the
 * weight index. dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight.
 */
function normBackward(
  x: HostTensor,
  dy: HostTensor,
  weight: HostTensor | undefined,
  out: HostTensor,
  runs: number,
  size: number,
  eps: number,
  channelOf: (run: number, k: number) => number,
): void {
  const xd = x.data;
  const dd = dy.data;
  const od = out.data;
  const xhat = new Float64Array(size);
  const g = new Float64Array(size);
  for (let r = 0; r < runs; r++) {
    const base = r * size;
    let mean = 0;
    for (let k = 0; k < size; k++) mean += xd[base + k];
    mean /= size;
    let v = 0;
    for (let k = 0; k < size; k++) v += (xd[base + k] - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / size + eps);
    let mg = 0;
    let mgx = 0;
    for (let k = 0; k < size; k++) {
      xhat[k] = (xd[base + k] - mean) * rstd;
      g[k] = weight ? dd[base + k] * weight.data[channelOf(r, k)] : dd[base + k];
      mg += g[k];
      mgx += g[k] * xhat[k];
    }
    mg /= size;
    mgx /= size;
    for (let k = 0; k < size; k++) od[base + k] = rstd * (g[k] - mg - xhat[k] * mgx);
  }
}

registerKernel("layerNormBackward", (node, [x, dy, w]) => {
  const out = hostTensor(node.shape, node.dtype);
  const c = x.shape[x.shape.length - 1];
  normBackward(x, dy, w, out, numel(x.shape) / c, c, node.attrs.eps as number, (_r, k) => k);
  return out;
});

registerKernel("groupNormBackward", (node, [x, dy, w]) => {
  const out = hostTensor(node.shape, node.dtype);
  const [n, c] = x.shape;
  const groups = node.attrs.groups as number;
  const spatial = numel(x.shape.slice(2));
  const size = (c / groups) * spatial;
  normBackward(
    x,
    dy,
    w,
    out,
    n * groups,
    size,
    node.attrs.eps as number,
    (r, k) => (r % groups) * (c / groups) + Math.floor(k / spatial),
  );
  return out;
});
