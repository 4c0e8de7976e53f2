// conv2d's adjoint kernels (gathered taps + gemm) against the textbook loop over every
// (input pixel, weight tap, output pixel) triple with f64 accumulators: bit for bit, over strides,
// paddings, dilations, groups (depthwise too) and kernels larger than the stride. The gemm adds the
// same f64 products in the same order (and exact zeros for padded taps), so nothing may differ.
import { describe, expect, it } from "vitest";
import type { Node } from "../../compiler/ir/index.ts";
import "../../runtime/cpu/index.ts";
import { cpuKernel } from "../../runtime/cpu/kernels/registry.ts";
import { type HostTensor, hostTensor } from "../../runtime/cpu/tensor.ts";

interface Case {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

function reference(c: Case, x: HostTensor, wt: HostTensor, dy: HostTensor, oh: number, ow: number) {
  const dx = new Float64Array(x.data.length);
  const dw = new Float64Array(wt.data.length);
  const cpg = c.cin / c.groups;
  const opg = c.cout / c.groups;
  for (let b = 0; b < c.n; b++)
    for (let co = 0; co < c.cout; co++)
      for (let ci = 0; ci < cpg; ci++)
        for (let ky = 0; ky < c.kh; ky++)
          for (let kx = 0; kx < c.kw; kx++)
            for (let oy = 0; oy < oh; oy++)
              for (let ox = 0; ox < ow; ox++) {
                const iy = oy * c.stride[0] - c.padding[0] + ky * c.dilation[0];
                const ix = ox * c.stride[1] - c.padding[1] + kx * c.dilation[1];
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                const xi = ((b * c.cin + Math.floor(co / opg) * cpg + ci) * c.h + iy) * c.w + ix;
                const wi = ((co * cpg + ci) * c.kh + ky) * c.kw + kx;
                const yi = ((b * c.cout + co) * oh + oy) * ow + ox;
                dx[xi] += wt.data[wi] * dy.data[yi];
                dw[wi] += x.data[xi] * dy.data[yi];
              }
  return { dx: Float32Array.from(dx), dw: Float32Array.from(dw) };
}

const cases: Case[] = [
  { n: 2, cin: 3, h: 9, w: 7, cout: 4, kh: 3, kw: 3, stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 },
  { n: 1, cin: 4, h: 16, w: 16, cout: 8, kh: 4, kw: 4, stride: [4, 4], padding: [0, 0], dilation: [1, 1], groups: 1 },
  { n: 2, cin: 6, h: 11, w: 13, cout: 6, kh: 3, kw: 5, stride: [2, 3], padding: [2, 1], dilation: [2, 1], groups: 3 },
  { n: 1, cin: 8, h: 8, w: 8, cout: 8, kh: 3, kw: 3, stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 8 },
  { n: 3, cin: 2, h: 5, w: 5, cout: 3, kh: 7, kw: 7, stride: [2, 2], padding: [3, 3], dilation: [1, 1], groups: 1 },
  { n: 2, cin: 3, h: 6, w: 6, cout: 2, kh: 1, kw: 1, stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 },
  { n: 2, cin: 4, h: 10, w: 9, cout: 4, kh: 3, kw: 2, stride: [3, 2], padding: [4, 0], dilation: [2, 3], groups: 2 },
];

describe("conv2d adjoint kernels", () => {
  let seed = 7;
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const tensor = (shape: number[]) =>
    hostTensor(shape, "f32", Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, random));

  for (const c of cases) {
    it(`equal the tap-by-tap f64 loop bit for bit: ${JSON.stringify(c)}`, () => {
      const oh = Math.floor((c.h + 2 * c.padding[0] - c.dilation[0] * (c.kh - 1) - 1) / c.stride[0]) + 1;
      const ow = Math.floor((c.w + 2 * c.padding[1] - c.dilation[1] * (c.kw - 1) - 1) / c.stride[1]) + 1;
      const x = tensor([c.n, c.cin, c.h, c.w]);
      const wt = tensor([c.cout, c.cin / c.groups, c.kh, c.kw]);
      const dy = tensor([c.n, c.cout, oh, ow]);
      const attrs = { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups };
      const node = (shape: readonly number[]) => ({ attrs, shape, dtype: "f32" }) as unknown as Node;
      const dx = cpuKernel("conv2dBackwardInput")?.(node(x.shape), [dy, wt], { seed: 0 });
      const dw = cpuKernel("conv2dBackwardWeight")?.(node(wt.shape), [x, dy], { seed: 0 });
      const want = reference(c, x, wt, dy, oh, ow);
      expect(Array.from(dx?.data ?? [])).toEqual(Array.from(want.dx));
      expect(Array.from(dw?.data ?? [])).toEqual(Array.from(want.dw));
    });
  }
});
