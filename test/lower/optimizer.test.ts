// The trainer's other step graphs lowered and run on the emulator against runtime/cpu (f32, the
// per-element tolerance of helpers.ts): the AdamW update with gradient clipping (global norm, bias
// correction, decay, the non-finite guard) and the gradient accumulation graph, over a few
// parameter shapes including odd ones.

import { describe, it } from "vitest";
import { accumulateGrads, adamwParams, adamwUpdate, decayExcluded, grad } from "../../compiler/autodiff/index.ts";
import { hostTensor } from "../../runtime/cpu/index.ts";
import { checkLowering, graphInputs } from "./helpers.ts";
import { xxsGraph } from "./xxs.ts";

describe("optimizer graphs on the emulator vs runtime/cpu", () => {
  const params = adamwParams(grad(xxsGraph("pretrain", "forward", "f32"), { loss: "loss" }), decayExcluded).slice(0, 24);

  it(`AdamW update with clipping over ${params.length} xxs parameters`, () => {
    const g = adamwUpdate(params, { weightDecay: 0.05, maxGradNorm: 1 });
    const feeds = graphInputs(g);
    // Positive second moments and a sensible step: lr, step, gradScale are scalars.
    for (const [name, t] of feeds) {
      if (name.startsWith("v/")) for (let i = 0; i < t.data.length; i++) t.data[i] = Math.abs(t.data[i]);
    }
    feeds.set("lr", hostTensor([], "f32", [1e-3]));
    feeds.set("step", hostTensor([], "f32", [3]));
    feeds.set("gradScale", hostTensor([], "f32", [0.5]));
    checkLowering(g, feeds, { label: "adamw" });
  });

  it("gradient accumulation", () => {
    const g = accumulateGrads(params);
    checkLowering(g, graphInputs(g), { label: "accumulate" });
  });
});
