// Kernels of the backward-only ops (compiler/ir/ops/grad.ts): conv2d's adjoints, upsample's and
// take's scatter-adds, and the normalisation backward passes. Accumulation is in f64.

import { numel } from "../../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../tensor.ts";
import { gemm } from "./gemm.ts";
import { linearSource, nearestIndex } from "./nn.ts";
import { registerKernel } from "./registry.ts";

/**
 * Output positions o in [0, outSize) whose input coordinate o * stride + offset lies in [0, inSize):
 * the taps of one kernel offset that do not fall in the padding.
 */
function validRange(outSize: number, inSize: number, stride: number, offset: number): [number, number] {
  const lo = Math.max(0, Math.ceil(-offset / stride));
  const hi = Math.min(outSize, Math.floor((inSize - 1 - offset) / stride) + 1);
  return [lo, Math.max(lo, hi)];
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

// The adjoints as matrix products over gathered taps, like the forward conv2d (im2col + gemm):
//   dW[co, (ci,ky,kx)] = sum over (b, oy, ox) of dy[b, co, oy, ox] * x[b, ci, iy, ix]
//   dX[b, ci, iy, ix]  = sum over (co, ky, kx) of W[co, ci, ky, kx] * dy[b, co, oy, ox]
// where the gathered operand holds 0 for a tap in the padding (or between strides). gemm adds its
// f64 products in k order from +0, and an exact zero term leaves an f64 sum unchanged, so each
// output is the same f64 sum, in the same order, as visiting the taps one by one ((b, oy, ox) for a
// weight; (co, ky, kx) for an input pixel), rounded once to f32: the same bits as that loop.

registerKernel("conv2dBackwardInput", (node, [dy, w]) => {
  const {
    n,
    cin,
    h,
    w: wd_,
    cout,
    cpg,
    kh,
    kw,
    oh,
    ow,
    stride,
    padding,
    dilation,
    groups,
  } = geometry(node.attrs, node.shape, w.shape, dy.shape);
  const out = new Float32Array(numel(node.shape));
  const wd = w.data as Float32Array;
  const dd = dy.data as Float32Array;
  const opg = cout / groups;
  const taps = kh * kw;
  const k = opg * taps;
  const pixels = h * wd_;
  const wt = new Float32Array(cpg * k);
  const cols = new Float32Array(k * pixels);
  for (let g = 0; g < groups; g++) {
    // A = W of the group as [ci, (co, ky, kx)].
    for (let c = 0; c < cpg; c++)
      for (let co = 0; co < opg; co++) {
        const src = ((g * opg + co) * cpg + c) * taps;
        wt.set(wd.subarray(src, src + taps), c * k + co * taps);
      }
    for (let b = 0; b < n; b++) {
      adjointTaps(dd, (b * cout + g * opg) * oh * ow, opg, kh, kw, oh, ow, h, wd_, stride, padding, dilation, cols);
      gemm(
        { data: wt, offset: 0, rowStride: k, colStride: 1 },
        { data: cols, offset: 0, rowStride: pixels, colStride: 1 },
        cpg,
        k,
        pixels,
        out,
        (b * cin + g * cpg) * pixels,
        pixels,
      );
    }
  }
  return hostTensor(node.shape, node.dtype, out);
});

registerKernel("conv2dBackwardWeight", (node, [x, dy]) => {
  const {
    n,
    cin,
    h,
    w: wd_,
    cout,
    cpg,
    kh,
    kw,
    oh,
    ow,
    stride,
    padding,
    dilation,
    groups,
  } = geometry(node.attrs, x.shape, node.shape, dy.shape);
  const out = new Float32Array(numel(node.shape));
  const xd = x.data as Float32Array;
  const dd = dy.data as Float32Array;
  const opg = cout / groups;
  const taps = cpg * kh * kw;
  const pixels = oh * ow;
  const q = n * pixels;
  const dyg = new Float32Array(opg * q);
  const colsT = new Float32Array(q * taps);
  for (let g = 0; g < groups; g++) {
    // A = dy of the group as [co, (b, oy, ox)]; B = x's taps as [(b, oy, ox), (ci, ky, kx)].
    for (let co = 0; co < opg; co++)
      for (let b = 0; b < n; b++) {
        const src = (b * cout + g * opg + co) * pixels;
        dyg.set(dd.subarray(src, src + pixels), co * q + b * pixels);
      }
    for (let b = 0; b < n; b++)
      tapsTransposed(
        xd,
        (b * cin + g * cpg) * h * wd_,
        h,
        wd_,
        cpg,
        kh,
        kw,
        oh,
        ow,
        stride,
        padding,
        dilation,
        colsT,
        b * pixels,
      );
    gemm(
      { data: dyg, offset: 0, rowStride: q, colStride: 1 },
      { data: colsT, offset: 0, rowStride: taps, colStride: 1 },
      opg,
      q,
      taps,
      out,
      g * opg * taps,
      taps,
    );
  }
  return hostTensor(node.shape, node.dtype, out);
});

/** x's taps of one (sample, group), transposed: colsT[(row0 + oy * ow + ox) * taps + (ci, ky, kx)], 0 in the padding. */
function tapsTransposed(
  xd: Float32Array,
  inBase: number,
  h: number,
  wd: number,
  cpg: number,
  kh: number,
  kw: number,
  oh: number,
  ow: number,
  stride: number[],
  padding: number[],
  dilation: number[],
  colsT: Float32Array,
  row0: number,
): void {
  const taps = cpg * kh * kw;
  let r = 0;
  for (let ci = 0; ci < cpg; ci++)
    for (let ky = 0; ky < kh; ky++)
      for (let kx = 0; kx < kw; kx++, r++) {
        const offY = ky * dilation[0] - padding[0];
        const offX = kx * dilation[1] - padding[1];
        const [oxLo, oxHi] = validRange(ow, wd, stride[1], offX);
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * stride[0] + offY;
          const dst = (row0 + oy * ow) * taps + r;
          if (iy < 0 || iy >= h) {
            for (let ox = 0; ox < ow; ox++) colsT[dst + ox * taps] = 0;
            continue;
          }
          const src = inBase + (ci * h + iy) * wd + offX;
          for (let ox = 0; ox < oxLo; ox++) colsT[dst + ox * taps] = 0;
          for (let ox = oxLo; ox < oxHi; ox++) colsT[dst + ox * taps] = xd[src + ox * stride[1]];
          for (let ox = oxHi; ox < ow; ox++) colsT[dst + ox * taps] = 0;
        }
      }
}

/**
 * dy's taps seen from the input, for one (sample, group): cols[(co, ky, kx), iy * w + ix] is
 * dy[co, oy, ox] for the output pixel that reads input (iy, ix) through tap (ky, kx), or 0 when no
 * output pixel does (the padding, or a stride skipping it).
 */
function adjointTaps(
  dd: Float32Array,
  dyBase: number,
  opg: number,
  kh: number,
  kw: number,
  oh: number,
  ow: number,
  h: number,
  wd: number,
  stride: number[],
  padding: number[],
  dilation: number[],
  cols: Float32Array,
): void {
  const [s0, s1] = stride;
  const pixels = h * wd;
  let r = 0;
  for (let co = 0; co < opg; co++)
    for (let ky = 0; ky < kh; ky++)
      for (let kx = 0; kx < kw; kx++, r++) {
        const row = r * pixels;
        const ch = dyBase + co * oh * ow;
        for (let iy = 0; iy < h; iy++) {
          const ny = iy + padding[0] - ky * dilation[0];
          const oy = ny / s0;
          const dst = row + iy * wd;
          if (ny < 0 || ny % s0 !== 0 || oy >= oh) {
            cols.fill(0, dst, dst + wd);
            continue;
          }
          const src = ch + oy * ow;
          for (let ix = 0; ix < wd; ix++) {
            const nx = ix + padding[1] - kx * dilation[1];
            const ox = nx / s1;
            cols[dst + ix] = nx >= 0 && nx % s1 === 0 && ox < ow ? dd[src + ox] : 0;
          }
        }
      }
}

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
