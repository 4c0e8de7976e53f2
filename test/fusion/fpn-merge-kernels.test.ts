// The FPN merge kernels (kernels/fpn-merge.ts: the lateral conv as kernels/gemm.ts's GEMM with the
// conv bias, then fpnMergeNormalize) in the PTX emulator against the CPU reference of fpnMerge, for
// a channels-last (decoder) and an NCHW input, sizes that are not multiples of the GEMM tiles and a
// non-integer nearest upsampling factor; the f32 normalize kernel; and ptxas accepting the normalize
// kernel with zero spills.
//
// Tolerance per element: 2^-8 |ref| + 2^-7 ((|y_raw| + mean |y_raw|) rstd |w| + |n|) + 1e-6, with
// y_raw the GEMM's bf16 output and n = (y - mean) rstd w. The GEMM rounds y_raw (2^-9 of it, times
// rstd |w| once normalised); the mean and variance are sums of those rounded values (mean |y_raw|
// and |n| bound what that moves); the output is rounded once more (2^-9 of |ref|, doubled for
// neighbouring ties).

import { describe, expect, it } from "vitest";
import { runPtxas } from "../../compiler/codegen/ptxas.ts";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { fpnLateralGemm, fpnMergeNormalize } from "../../kernels/fpn-merge.ts";
import { gemmKernel } from "../../kernels/gemm.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { agreement, randomTensor, runInEmulator, zeros } from "../kernels/harness.ts";

function reference(
  x: HostTensor,
  w: HostTensor,
  coarse: HostTensor,
  bias: HostTensor,
  gw: HostTensor,
  gb: HostTensor,
  layout: string,
  groups: number,
) {
  const g = new Graph();
  const input = (name: string, t: HostTensor) => g.add("input", [], { name, shape: [...t.shape], dtype: "f32" }).id;
  const attrs = { groups, eps: 1e-5, layout, convBias: true, normWeight: true, normBias: true };
  const ins = [input("x", x), input("w", w), input("coarse", coarse), input("bias", bias), input("gw", gw), input("gb", gb)];
  g.setOutput("o", g.add("fpnMerge", ins, attrs).id);
  return execute(g, { inputs: { x, w, coarse, bias, gw, gb }, params: {} }).outputs.get("o")!;
}

describe("FPN merge kernels in the emulator vs the CPU reference", () => {
  for (const layout of ["nhwc", "nchw"] as const) {
    it(`${layout} x: lateral GEMM + GroupNorm + nearest top-down add`, () => {
      const [batch, height, width, cin, d, groups, ch, cw] = [2, 9, 7, 24, 16, 4, 5, 4];
      const hw = height * width;
      const x = randomTensor(layout === "nhwc" ? [batch, height, width, cin] : [batch, cin, height, width], 31);
      const w = randomTensor([d, cin, 1, 1], 32, { scale: 0.5 });
      const bias = randomTensor([d], 33, { scale: 0.3 });
      const gw = randomTensor([d], 34, { offset: 1, scale: 0.5 });
      const gb = randomTensor([d], 35, { scale: 0.5 });
      const coarse = randomTensor([batch, d, ch, cw], 36);
      const ref = reference(x, w, coarse, bias, gw, gb, layout, groups);
      const normalised = reference(x, w, zeros([batch, d, ch, cw]), bias, gw, gb, layout, groups);

      const y = zeros([batch * hw, d]);
      // Row alignment for cp.async (and paired stores): rows of Cin (weight, channels-last x), of
      // H*W (NCHW x and y).
      const align = (n: number) => (n % 8 === 0 ? 8 : n % 2 === 0 ? 2 : 1);
      const gemm = gemmKernel({
        ...fpnLateralGemm({ layout, convBias: true }),
        alignA: align(cin),
        alignB: align(layout === "nhwc" ? cin : hw),
        alignC: Math.min(2, align(layout === "nhwc" ? d : hw)),
      });
      const gemmArgs: Record<string, HostTensor | number> =
        layout === "nhwc"
          ? { a: x, b: w, c: y, bias, M: batch * hw, N: d, K: cin, lda: cin, ldb: cin, ldc: d }
          : {
              a: w,
              b: x,
              c: y,
              M: d,
              N: hw,
              K: cin,
              lda: cin,
              ldb: hw,
              ldc: hw,
              batch,
              strideA: 0,
              strideB: cin * hw,
              strideC: d * hw,
            };
      const lateral = runInEmulator(gemm, gemmArgs).tensors.get("c")!;
      const run = runInEmulator(
        fpnMergeNormalize({ yLayout: layout, convBias: layout === "nchw", normWeight: true, normBias: true }),
        {
          y: lateral,
          convBias: bias,
          coarse,
          normWeight: gw,
          normBias: gb,
          out: zeros([batch, d, height, width]),
          batch,
          channels: d,
          height,
          width,
          coarseH: ch,
          coarseW: cw,
          groups,
          eps: 1e-5,
        },
      );
      // The GEMM's rounded output y_raw (before an NCHW path's bias), and per (image, group) the
      // reference rstd and mean |y_raw|.
      const cpg = d / groups;
      const raw = (b: number, c: number, p: number) =>
        layout === "nhwc" ? lateral.data[(b * hw + p) * d + c] : lateral.data[(b * d + c) * hw + p];
      const rstd = new Float64Array(batch * groups);
      const meanAbs = new Float64Array(batch * groups);
      for (let b = 0; b < batch; b++)
        for (let g = 0; g < groups; g++) {
          let s = 0;
          let s2 = 0;
          let sa = 0;
          for (let p = 0; p < hw; p++)
            for (let c = g * cpg; c < (g + 1) * cpg; c++) {
              const v = raw(b, c, p) + (layout === "nchw" ? bias.data[c] : 0);
              s += v;
              s2 += v * v;
              sa += Math.abs(raw(b, c, p));
            }
          const n = cpg * hw;
          rstd[b * groups + g] = 1 / Math.sqrt(s2 / n - (s / n) ** 2 + 1e-5);
          meanAbs[b * groups + g] = sa / n;
        }
      const a = agreement(run.tensors.get("out")!.data, ref.data, (i, want) => {
        const c = Math.floor(i / hw) % d;
        const b = Math.floor(i / (hw * d));
        const g = b * groups + Math.floor(c / cpg);
        const n = Math.abs(normalised.data[i] - gb.data[c]); // |(y - mean) rstd w|
        const rounding = (Math.abs(raw(b, c, i % hw)) + meanAbs[g]) * rstd[g] * Math.abs(gw.data[c]);
        return 2 ** -8 * Math.abs(want) + 2 ** -7 * (rounding + n) + 1e-6;
      });
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    });
  }

  it("f32 (an f32 graph's merge): normalize of the lateral product, within 2e-5 of max |ref|", () => {
    // The lateral conv product is formed on the host (the f32 GEMM has its own tests); the kernel
    // then normalises in f32 (two-pass statistics) and adds the upsampled coarse map. Measured <= 1e-6.
    const [batch, height, width, cin, d, groups, ch, cw] = [2, 5, 6, 12, 8, 2, 3, 2];
    const hw = height * width;
    const x = randomTensor([batch, height, width, cin], 41);
    const w = randomTensor([d, cin, 1, 1], 42, { scale: 0.5 });
    const bias = randomTensor([d], 43, { scale: 0.3 });
    const gw = randomTensor([d], 44, { offset: 1, scale: 0.5 });
    const gb = randomTensor([d], 45, { scale: 0.5 });
    const coarse = randomTensor([batch, d, ch, cw], 46);
    const ref = reference(x, w, coarse, bias, gw, gb, "nhwc", groups);
    const y = zeros([batch, hw, d]);
    for (let r = 0; r < batch * hw; r++)
      for (let c = 0; c < d; c++) {
        let acc = bias.data[c];
        for (let k = 0; k < cin; k++) acc += x.data[r * cin + k] * w.data[c * cin + k];
        y.data[r * d + c] = acc;
      }
    const run = runInEmulator(
      fpnMergeNormalize({ yLayout: "nhwc", convBias: false, normWeight: true, normBias: true, dtype: "f32" }),
      {
        y,
        convBias: bias,
        coarse,
        normWeight: gw,
        normBias: gb,
        out: zeros([batch, d, height, width]),
        batch,
        channels: d,
        height,
        width,
        coarseH: ch,
        coarseW: cw,
        groups,
        eps: 1e-5,
      },
    );
    const got = run.tensors.get("out")!.data;
    let err = 0;
    let scale = 0;
    for (let i = 0; i < got.length; i++) {
      err = Math.max(err, Math.abs(got[i] - ref.data[i]));
      scale = Math.max(scale, Math.abs(ref.data[i]));
    }
    expect(err / scale, `max |err| ${err}`).toBeLessThanOrEqual(2e-5);
  });

  it("ptxas: fpn_merge_normalize has no spills", () => {
    const kernel = fpnMergeNormalize({ yLayout: "nhwc", convBias: false, normWeight: true, normBias: true });
    const r = runPtxas(kernel.name, renderPtx(kernel), { dir: "dist/test-fusion/ptx" });
    expect(r.spillStoreBytes + r.spillLoadBytes).toBe(0);
  });
});
