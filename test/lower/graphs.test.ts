// Whole graphs lowered to plans and run on the PTX emulator, every output against runtime/cpu's
// execute of the same graph: an MLP block, PerceptNet's Swin V1 and V2 blocks (shifted windows on a
// 6x6 map padded to 8x8: pad, roll, partition, relative-position take, shift mask, V2's cosine
// attention and CPB MLP), the V2 block's training step (forward + every gradient), in f32 and bf16.
//
// f32: the per-element tolerance of helpers.ts (2e-6 of the scale). bf16: checkAgainstTruth
// (helpers.ts): the plan is as accurate as the CPU's bf16 graph against the f32 evaluation.

import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { type AnyTensor, defineModel, instance, Module, nn, spec, traceModel } from "../../compiler/dsl/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";
import { SwinBlockV1, SwinBlockV2 } from "../../model/perceptnet/blocks.ts";
import { checkAgainstTruth, checkLowering, graphInputs, graphParams } from "./helpers.ts";

class MlpBlock extends Module {
  readonly norm = new nn.LayerNorm(40);
  readonly fc1 = new nn.Linear(40, 72);
  readonly fc2 = new nn.Linear(72, 40);
  forward(x: AnyTensor): AnyTensor {
    return x.add(this.fc2.forward(this.fc1.forward(this.norm.forward(x as never)).gelu()));
  }
}

function trace(
  module: Module,
  shape: number[],
  dtype: "f32" | "bf16",
  fwd: (x: AnyTensor) => AnyTensor,
  withLoss = false,
): Graph {
  const def = defineModel({
    name: "case",
    configs: { only: {} },
    defaultConfig: "only",
    create: () =>
      instance({
        module,
        inputs: { x: spec([...shape]) },
        forward: ({ x }: Record<string, AnyTensor>) => {
          const y = fwd(dtype === "bf16" ? x.cast("bf16") : x).cast("f32");
          const out: Record<string, AnyTensor> = { y };
          if (withLoss) out.loss = y.mul(y).mean([...shape.keys()]);
          return out as never;
        },
      }),
  });
  return dce(cse(traceModel(def, {}).graph));
}

const blockOptions = { dim: 16, heads: 2, window: 4, shift: 2, mlpRatio: 2, dropPath: 0 };
const blocks = {
  mlp: { make: () => new MlpBlock(), shape: [2, 9, 40] },
  "Swin V1 block": { make: () => new SwinBlockV1(blockOptions), shape: [1, 6, 6, 16] },
  "Swin V2 block": { make: () => new SwinBlockV2(blockOptions), shape: [1, 6, 6, 16] },
};

describe("whole graphs on the emulator vs runtime/cpu", () => {
  for (const [name, b] of Object.entries(blocks)) {
    it(`${name}, f32 forward`, () => {
      const m = b.make();
      const g = trace(m, b.shape, "f32", (x) => m.forward(x as never) as AnyTensor);
      checkLowering(g, graphInputs(g), { params: graphParams(g), label: name });
    });
    it(`${name}, bf16 forward`, () => {
      const m = b.make();
      checkAgainstTruth(
        trace(m, b.shape, "bf16", (x) => m.forward(x as never) as AnyTensor),
        name,
      );
    });
  }
  it("Swin V2 block training step (forward + every gradient), bf16", () => {
    const m = blocks["Swin V2 block"].make();
    const g = grad(
      trace(m, blocks["Swin V2 block"].shape, "bf16", (x) => m.forward(x as never) as AnyTensor, true),
      { loss: "loss" },
    );
    const ops = new Set(g.nodes.map((n) => n.op));
    for (const op of ["takeBackward", "layerNormBackward", "matmul", "softmax", "roll", "pad"])
      expect(ops.has(op), op).toBe(true);
    checkAgainstTruth(g, "V2 training step");
  });
});
