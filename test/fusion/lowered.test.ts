// Fused training steps lowered to their kernels (compiler/lower/rules/fused*.ts) and run on the PTX
// emulator against runtime/cpu running the same fused graph (its references of the fused ops):
//
// - bf16 Swin V1 / V2 blocks (shifted, padded 6x6 -> 8x8: padInput): forward + every gradient, the
//   relative-position table, V2's logit scale and CPB MLP included, through windowAttentionBackward's
//   kernels and the column reductions; held to the CPU bf16 graph's own accuracy against the f32
//   evaluation (checkAgainstTruth, test/lower/helpers.ts). The gradients are the same bits when the
//   plan runs twice (the table/scale/pad sums are fixed-order, no atomics).
// - f32 (CUDA-core kernels) Swin V2 block and FPN decoder (cross-attention, FPN merges), forward +
//   every gradient within 1e-5 of each output's scale + 2e-6 relative: a whole training step chains
//   ~100 kernels that each sum in another order than the CPU's f64 references (measured: 0.24 of
//   this bound at worst, on the P5 lateral conv's gradients, which sum every query's cross-attention
//   dS = P (dP - delta) where P = 1 over a single key: f32 cancellation noise; the V2 block 0.12).
// - `ptc build --training` (build(), no artifacts) lowers xxs's fused training step.

import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import type { AnyTensor } from "../../compiler/dsl/index.ts";
import { build } from "../../compiler/frontend/build.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { lowerGraph, unloweredOps } from "../../compiler/lower/index.ts";
import { fuse } from "../../compiler/passes/index.ts";
import { SwinBlockV1, SwinBlockV2 } from "../../model/perceptnet/blocks.ts";
import { FpnDecoder } from "../../model/perceptnet/decoder.ts";
import type { HostTensor } from "../../runtime/cpu/index.ts";
import { checkAgainstTruth, checkLowering, graphInputs, graphParams } from "../lower/helpers.ts";
import { runPlan } from "../lower/run-plan.ts";
import { traceWithLoss } from "./helpers.ts";

const block = { dim: 16, heads: 1, window: 4, shift: 2, mlpRatio: 2, dropPath: 0 };
const STEP_F32 = (want: number, scale: number) => 1e-5 * scale + 2e-6 * Math.abs(want);

/** The fused graph's training step (gradients of every param and of the input x). */
function trainingStep(g: Graph, counts: Record<string, number>, wrtInputs: string[]): Graph {
  const f = fuse(g);
  for (const [op, n] of Object.entries(counts)) expect(f.counts[op as keyof typeof f.counts], op).toBe(n);
  const step = grad(f.graph, { loss: "loss", wrtInputs });
  expect(unloweredOps(step)).toEqual([]);
  return step;
}

const kernels = (g: Graph) => lowerGraph(g).plan.launches.map((l) => l.kernel);

describe("fused training steps on their kernels (emulator vs runtime/cpu)", () => {
  for (const [name, make] of [
    ["Swin V1 block", () => new SwinBlockV1(block)],
    ["Swin V2 block", () => new SwinBlockV2(block)],
  ] as const) {
    it(`${name}, bf16: windowAttentionBackward (dq, dk/dv, table/scale/pad sums); same bits twice`, () => {
      const g = traceWithLoss(make(), { x: [1, 6, 6, 16] }, (m, { x }) => m.forward(x as never) as AnyTensor, { dtype: "bf16" });
      const step = trainingStep(g, { windowAttention: 1 }, ["x"]);
      const k = kernels(step);
      for (const prefix of [
        "window_attention_fwd",
        "window_attention_bwd_q",
        "window_attention_bwd_kv",
        "reduce_cols_sum_f32_bf16",
      ])
        expect(
          k.some((x) => x.startsWith(prefix)),
          prefix,
        ).toBe(true);
      expect(step.nodes.some((n) => n.op === "softmax")).toBe(false); // no unfused attention left
      const r = checkAgainstTruth(step, `${name} bf16 training step`);
      expect(r.errors.some((e) => /relativePositionBiasTable|cpbMlp/.test(e.name))).toBe(true);
      const again = runPlan(lowerGraph(step).plan, { inputs: graphInputs(step), params: graphParams(step) });
      for (const [out, t] of again.outputs)
        expect(Array.from(t.data), out).toEqual(Array.from((r.run.outputs.get(out) as HostTensor).data));
    });
  }

  it("Swin V2 block, f32: forward and every gradient on the CUDA-core kernels", () => {
    const g = traceWithLoss(new SwinBlockV2(block), { x: [1, 6, 6, 16] }, (m, { x }) => m.forward(x as never) as AnyTensor);
    const step = trainingStep(g, { windowAttention: 1 }, ["x"]);
    expect(kernels(step).some((x) => x.startsWith("window_attention_simt_bwd_q"))).toBe(true);
    checkLowering(step, graphInputs(step), {
      params: graphParams(step),
      label: "V2 block f32 step",
      tolerance: { f32: STEP_F32 },
    });
  });

  it("FPN decoder, f32: cross-attention and FPN merges, forward and every gradient", () => {
    const decoder = new FpnDecoder([8, 16, 32, 64], { dim: 32, heads: 2, groups: 4, ffnRatio: 2 });
    const sides = [8, 4, 2, 1];
    const inputs = Object.fromEntries(sides.map((s, i) => [`f${i}`, [1, s, s, [8, 16, 32, 64][i]]]));
    const g = traceWithLoss(decoder, inputs, (m, xs) => m.forward(sides.map((_, i) => xs[`f${i}`]) as never) as AnyTensor);
    const step = trainingStep(g, { crossAttention: 3, fpnMerge: 3 }, []);
    const k = kernels(step);
    for (const prefix of ["cross_attention_simt_fwd", "cross_attention_simt_bwd_kv", "fpn_merge_normalize_nhwc"])
      expect(
        k.some((x) => x.startsWith(prefix)),
        prefix,
      ).toBe(true);
    checkLowering(step, graphInputs(step), {
      params: graphParams(step),
      label: "decoder f32 step",
      tolerance: { f32: STEP_F32 },
    });
  });
});

describe("ptc build --training lowers the fused training step", () => {
  // bf16, as the trainer's `--precision bf16` (the f32 step's kernels are the blocks' above).
  for (const precision of ["bf16"] as const) {
    it(`xxs, ${precision}`, async () => {
      const r = await build("model/perceptnet.ts", { config: "xxs", training: true, precision, typecheck: false, write: false });
      expect(r.fusions).toEqual({ windowAttention: 8, fpnMerge: 3, crossAttention: 3 });
      expect(r.kernels).toMatchObject({ graph: "fused", step: "training step", reason: null });
      expect(r.kernels?.launches).toBeGreaterThan(500);
    });
  }
});
