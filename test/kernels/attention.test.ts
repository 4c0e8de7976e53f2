// Window attention (tile mode: mma A.B^T and A.B, row max/sum reductions with quad shuffles, row
// vectors in maps, an f32 accumulator converted to a bf16 A operand) in the emulator vs the CPU
// executor's softmax(scale Q K^T) V.
//
// Tolerance: scores are exact products of bf16 values summed in f32 (D terms), exp2 and the row sums
// are within ~1e-6 relative; P is rounded to bf16 before P V (as flash attention does), which moves
// each output by at most 2^-9 sum_j p_ij |v_jd| (half a bf16 ulp of every p). So
//   tol = 2^-8 sum_j p_ij |v_jd| + 1e-5 |ref|,  plus one bf16 ulp 2^-7 |ref| for bf16 outputs.

import { describe, expect, it } from "vitest";
import { windowAttentionForward } from "../../kernels/attention.ts";
import { agreement, BF16_ULP_REL, randomTensor, runInEmulator, zeros } from "./harness.ts";
import { constNode, cpuReference } from "./reference.ts";

describe("window attention forward", () => {
  for (const [seq, d, len, out] of [
    [32, 32, 32, "bf16"],
    [48, 64, 41, "bf16"],
    [64, 16, 64, "f32"],
  ] as const) {
    it(`S=${seq} D=${d} len=${len} -> ${out}`, () => {
      const windows = 3;
      const scale = 1 / Math.sqrt(d);
      const q = randomTensor([windows, len, d], 1, { scale: 2 });
      const kk = randomTensor([windows, len, d], 2, { scale: 2 });
      const v = randomTensor([windows, len, d], 3);
      const run = runInEmulator(windowAttentionForward({ seq, headDim: d, out }), {
        q,
        k: kk,
        v,
        o: zeros([windows, len, d]),
        windows,
        len,
        scale,
      });
      const ref = cpuReference({ q, k: kk, v }, (g, input) => {
        const s = g.add("mul", [g.add("matmul", [input("q").id, input("k").id], { transB: true }).id, constNode(g, scale).id]);
        let o = g.add("matmul", [g.add("softmax", [s.id], { axis: 2 }).id, input("v").id]);
        if (out === "bf16") o = g.add("cast", [o.id], { dtype: "bf16" });
        return { o };
      }).o.data;
      // sum_j p_ij |v_jd| per output element, from an f64 softmax.
      const pv = new Float64Array(windows * len * d);
      for (let w = 0; w < windows; w++) {
        for (let i = 0; i < len; i++) {
          const sc = new Float64Array(len);
          for (let j = 0; j < len; j++) {
            let acc = 0;
            for (let c = 0; c < d; c++) acc += q.data[(w * len + i) * d + c] * kk.data[(w * len + j) * d + c];
            sc[j] = acc * scale;
          }
          const mx = Math.max(...sc);
          let sum = 0;
          for (let j = 0; j < len; j++) sum += Math.exp(sc[j] - mx);
          for (let j = 0; j < len; j++) {
            const pj = Math.exp(sc[j] - mx) / sum;
            for (let c = 0; c < d; c++) pv[(w * len + i) * d + c] += pj * Math.abs(v.data[(w * len + j) * d + c]);
          }
        }
      }
      const a = agreement(run.tensors.get("o")!.data, ref, (i, want) => {
        const tf = 2 ** -8 * pv[i] + 1e-5 * Math.abs(want) + 1e-30;
        return out === "bf16" ? BF16_ULP_REL * Math.abs(want) + 2 * tf : tf;
      });
      expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
      expect(run.stats.mmaOps).toBeGreaterThan(0);
    });
  }
});
