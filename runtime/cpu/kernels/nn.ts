// matmul, conv2d, resampling and the stochastic masks.

import { numel } from "../../../compiler/ir/index.ts";
import { matmulDims } from "../../../compiler/ir/ops/nn.ts";
import { dropThreshold, randomBits, streamKey } from "../random.ts";
import { broadcastStrides, hostTensor } from "../tensor.ts";
import { type GemmOperand, gemm, packRowMajor } from "./gemm.ts";
import { registerKernel } from "./registry.ts";

registerKernel("matmul", (node, [a, b]) => {
  const transA = node.attrs.transA === true;
  const transB = node.attrs.transB === true;
  const { m, ka: k, n } = matmulDims(a, b, transA, transB);
  const out = hostTensor(node.shape, node.dtype);
  const od = out.data as Float32Array;
  const batchShape = node.shape.slice(0, -2);
  const batches = numel(batchShape);
  const sa = broadcastStrides(a.shape.slice(0, -2), batchShape);
  const sb = broadcastStrides(b.shape.slice(0, -2), batchShape);
  const ad = a.data as Float32Array;
  const bd = b.data as Float32Array;
  // B shared by every batch (a linear layer on [..., tokens, C]) with A row-major: one product
  // with all batch rows stacked, so small per-batch row counts still fill the 4-row blocks.
  if (!transA && sb.every((s) => s === 0) && sa.every((s, d) => s !== 0 || batchShape[d] === 1)) {
    const opB: GemmOperand = transB
      ? { data: packRowMajor(bd, 0, k, n, 1, k), offset: 0, rowStride: n, colStride: 1 }
      : { data: bd, offset: 0, rowStride: n, colStride: 1 };
    gemm({ data: ad, offset: 0, rowStride: k, colStride: 1 }, opB, batches * m, k, n, od, 0, n);
    return out;
  }
  const idx = new Array<number>(batchShape.length).fill(0);
  // op(A) is read in place (a transposed A still streams 4 contiguous rows); a transposed B is
  // packed row-major once per distinct batch matrix, so the product reads it contiguously.
  let lastB = -1;
  let opB: GemmOperand = { data: bd, offset: 0, rowStride: n, colStride: 1 };
  for (let bi = 0; bi < batches; bi++) {
    let offA = 0;
    let offB = 0;
    for (let d = 0; d < idx.length; d++) {
      offA += idx[d] * sa[d] * m * k;
      offB += idx[d] * sb[d] * k * n;
    }
    const opA: GemmOperand = { data: ad, offset: offA, rowStride: transA ? 1 : k, colStride: transA ? m : 1 };
    if (offB !== lastB) {
      opB = transB
        ? { data: packRowMajor(bd, offB, k, n, 1, k), offset: 0, rowStride: n, colStride: 1 }
        : { data: bd, offset: offB, rowStride: n, colStride: 1 };
      lastB = offB;
    }
    gemm(opA, opB, m, k, n, od, bi * m * n, n);
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d] < batchShape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
});

/**
 * conv2d as a product per (sample, group): out[co, pixel] = bias[co] + W[co, r] @ cols[r, pixel],
 * where row r = (ci, ky, kx) of `cols` holds the input pixel each output pixel sees through that tap
 * (0 in the padding). Sums run bias first, then r in (ci, ky, kx) order.
 */
registerKernel("conv2d", (node, [x, w, bias]) => {
  const [stride, padding, dilation] = ["stride", "padding", "dilation"].map((k) => node.attrs[k] as number[]);
  const groups = node.attrs.groups as number;
  const [n, cin, h, wd] = x.shape;
  const [cout, cpg, kh, kw] = w.shape;
  const [, , oh, ow] = node.shape;
  const opg = cout / groups;
  const out = hostTensor(node.shape, node.dtype);
  const od = out.data as Float32Array;
  const xd = x.data as Float32Array;
  const taps = cpg * kh * kw;
  const pixels = oh * ow;
  const direct = kh === 1 && kw === 1 && stride[0] === 1 && stride[1] === 1 && padding[0] === 0 && padding[1] === 0;
  const cols = direct ? xd : new Float32Array(taps * pixels);
  const weights: GemmOperand = { data: w.data as Float32Array, offset: 0, rowStride: taps, colStride: 1 };
  for (let b = 0; b < n; b++) {
    for (let g = 0; g < groups; g++) {
      const inBase = (b * cin + g * cpg) * h * wd;
      if (!direct) im2col(xd, inBase, h, wd, cpg, kh, kw, oh, ow, stride, padding, dilation, cols);
      const rowInit = bias ? (bias.data as Float32Array).subarray(g * opg, (g + 1) * opg) : undefined;
      gemm(
        { ...weights, offset: g * opg * taps },
        { data: cols, offset: direct ? inBase : 0, rowStride: pixels, colStride: 1 },
        opg,
        taps,
        pixels,
        od,
        (b * cout + g * opg) * pixels,
        pixels,
        rowInit,
      );
    }
  }
  return out;
});

function im2col(
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
  cols: Float32Array,
): void {
  let r = 0;
  for (let ci = 0; ci < cpg; ci++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++, r++) {
        const row = r * oh * ow;
        for (let oy = 0; oy < oh; oy++) {
          const iy = oy * stride[0] - padding[0] + ky * dilation[0];
          const dst = row + oy * ow;
          if (iy < 0 || iy >= h) {
            cols.fill(0, dst, dst + ow);
            continue;
          }
          const src = inBase + (ci * h + iy) * wd;
          for (let ox = 0; ox < ow; ox++) {
            const ix = ox * stride[1] - padding[1] + kx * dilation[1];
            cols[dst + ox] = ix >= 0 && ix < wd ? xd[src + ix] : 0;
          }
        }
      }
    }
  }
}

/** Source coordinate rules of torch.nn.functional.interpolate (scale = in/out, computed in f32). */
export function nearestIndex(dst: number, inSize: number, outSize: number): number {
  const scale = Math.fround(inSize / outSize);
  return Math.min(Math.floor(Math.fround(dst * scale)), inSize - 1);
}

export function linearSource(dst: number, inSize: number, outSize: number, alignCorners: boolean): [number, number, number] {
  let src: number;
  if (alignCorners) src = outSize > 1 ? (dst * (inSize - 1)) / (outSize - 1) : 0;
  else src = Math.max((dst + 0.5) * (inSize / outSize) - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inSize - 1);
  const i1 = Math.min(i0 + 1, inSize - 1);
  return [i0, i1, src - i0];
}

registerKernel("upsample", (node, [x]) => {
  const [n, c, h, w] = x.shape;
  const [, , oh, ow] = node.shape;
  const out = hostTensor(node.shape, node.dtype);
  const bilinear = node.attrs.mode === "bilinear";
  const align = node.attrs.alignCorners === true;
  const ys = Array.from({ length: oh }, (_, y) => (bilinear ? linearSource(y, h, oh, align) : [nearestIndex(y, h, oh), 0, 0]));
  const xs = Array.from({ length: ow }, (_, xx) => (bilinear ? linearSource(xx, w, ow, align) : [nearestIndex(xx, w, ow), 0, 0]));
  for (let p = 0; p < n * c; p++) {
    const src = p * h * w;
    const dst = p * oh * ow;
    for (let y = 0; y < oh; y++) {
      const [y0, y1, ly] = ys[y];
      for (let xx = 0; xx < ow; xx++) {
        const [x0, x1, lx] = xs[xx];
        if (!bilinear) {
          out.data[dst + y * ow + xx] = x.data[src + y0 * w + x0];
          continue;
        }
        const top = x.data[src + y0 * w + x0] * (1 - lx) + x.data[src + y0 * w + x1] * lx;
        const bot = x.data[src + y1 * w + x0] * (1 - lx) + x.data[src + y1 * w + x1] * lx;
        out.data[dst + y * ow + xx] = top * (1 - ly) + bot * ly;
      }
    }
  }
  return out;
});

registerKernel("pixelShuffle", (node, [x]) => {
  const r = node.attrs.factor as number;
  const [n, c, h, w] = node.shape;
  const [, cin, ih, iw] = x.shape;
  const out = hostTensor(node.shape, node.dtype);
  for (let b = 0; b < n; b++)
    for (let ch = 0; ch < c; ch++)
      for (let y = 0; y < h; y++)
        for (let xx = 0; xx < w; xx++) {
          const ci = ch * r * r + (y % r) * r + (xx % r);
          out.data[((b * c + ch) * h + y) * w + xx] = x.data[((b * cin + ci) * ih + Math.floor(y / r)) * iw + Math.floor(xx / r)];
        }
  return out;
});

registerKernel("dropout", (node, [x], ctx) => {
  const p = node.attrs.p as number;
  const key = streamKey(ctx.seed, node.attrs.stream as number);
  const threshold = dropThreshold(p);
  const scale = 1 / (1 - p);
  const out = hostTensor(node.shape, node.dtype);
  for (let i = 0; i < x.data.length; i++) out.data[i] = randomBits(key, i) >= threshold ? x.data[i] * scale : 0;
  return out;
});

registerKernel("dropPath", (node, [x], ctx) => {
  const p = node.attrs.p as number;
  const key = streamKey(ctx.seed, node.attrs.stream as number);
  const threshold = dropThreshold(p);
  const scale = 1 / (1 - p);
  const out = hostTensor(node.shape, node.dtype);
  const per = x.data.length / x.shape[0];
  for (let s = 0; s < x.shape[0]; s++) {
    const keep = randomBits(key, s) >= threshold ? scale : 0;
    for (let i = s * per; i < (s + 1) * per; i++) out.data[i] = x.data[i] * keep;
  }
  return out;
});
