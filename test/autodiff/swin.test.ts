// Gradients of PerceptNet's Swin V1 and V2 blocks (model/perceptnet/blocks.ts) against torchvision's
// SwinTransformerBlock / SwinTransformerBlockV2 (shifted windows on a 6x6 map padded to 8x8), with
// torchvision's weights loaded through the model's own name mapping, and of the SimMIM objective
// (mask token, reconstruction head, per-patch normalised target, masked L1) against plain torch.
// Fixtures: test/golden/autodiff/gen_grads.py (torch autograd in f64 from f32 inputs).
//
// Tolerance: as golden.test.ts (each op in f64, stored in f32): 2e-5 of the tensor's largest
// gradient + 1e-4 of the element. These graphs are ~3x deeper (cosine attention, the CPB MLP,
// shift masks, two residual branches), hence 2e-5 rather than 1e-5 of the scale.

import path from "node:path";
import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { defineModel, instance, type ModelDefinition, Module, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import { SwinBlockV1, SwinBlockV2 } from "../../model/perceptnet/blocks.ts";
import {
  applyMaskToken,
  expandMask,
  maskedL1Loss,
  maskTokenParameter,
  normalizePatches,
  SimMIMHead,
} from "../../model/perceptnet/simmim.ts";
import { torchvisionBlockTargets } from "../../model/perceptnet/torchvision-names.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { repoRoot } from "../helpers/cli.ts";

const fixtures = path.join(repoRoot, "test/golden/autodiff");

function rows(t: HostTensor, range: readonly [number, number] | undefined): HostTensor {
  if (!range) return t;
  const inner = t.data.length / t.shape[0];
  return hostTensor([range[1] - range[0], ...t.shape.slice(1)], t.dtype, t.data.slice(range[0] * inner, range[1] * inner));
}

function expectGradClose(actual: HostTensor, expected: HostTensor, what: string): number {
  expect(actual.shape, what).toEqual(expected.shape);
  const scale = Math.max(...Array.from(expected.data, Math.abs));
  expect(scale, `${what}: torch's gradient must not vanish`).toBeGreaterThan(1e-6);
  let worst = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const err = Math.abs(actual.data[i] - expected.data[i]);
    worst = Math.max(worst, err / scale);
    if (err > 2e-5 * scale + 1e-4 * Math.abs(expected.data[i])) {
      throw new Error(`${what}[${i}]: got ${actual.data[i]}, torch ${expected.data[i]} (scale ${scale})`);
    }
  }
  return worst;
}

type Map4 = Tensor<[number, number, number, number], "f32">;

function blockModel(version: 1 | 2): ModelDefinition {
  return defineModel({
    name: `swin_v${version}`,
    configs: { only: {} },
    defaultConfig: "only",
    create: (_c, o) => {
      const options = { dim: 16, heads: 2, window: 4, shift: 2, mlpRatio: 2, dropPath: 0 };
      const module = version === 1 ? new SwinBlockV1(options) : new SwinBlockV2(options);
      return instance({
        module,
        inputs: { x: spec([o.batch, 6, 6, 16]), R: spec([o.batch, 6, 6, 16]) },
        forward: ({ x, R }) => ({
          loss: module
            .forward(x as Map4)
            .mul(R)
            .sum([0, 1, 2, 3]),
        }),
      });
    },
  }) as ModelDefinition;
}

/** Loads torchvision's block weights by the model's mapping, runs grad(), compares every gradient. */
function checkBlock(version: 1 | 2): number {
  const fx = readSafetensors(path.join(fixtures, `swin_v${version}.safetensors`));
  const tg = grad(traceModel(blockModel(version), { batch: 2 }).graph, { loss: "loss", wrtInputs: ["x"] });
  const params = new Map<string, HostTensor>();
  const compare: { torch: string; ours: string; rows?: readonly [number, number] }[] = [];
  for (const [key, t] of fx) {
    if (!key.startsWith("param.")) continue;
    const torchName = key.slice("param.".length);
    const targets = torchvisionBlockTargets(torchName, t.shape, version === 1 ? "v1" : "v2");
    if (!targets) throw new Error(`the model's mapping does not know ${torchName}`);
    for (const target of targets) {
      params.set(target.name, rows(t, target.rows));
      compare.push({ torch: torchName, ours: target.name, rows: target.rows });
    }
  }
  expect([...params.keys()].sort()).toEqual(
    tg
      .params()
      .map((p) => String(p.attrs.name))
      .sort(),
  );
  const inputs = { x: fx.get("input.x") as HostTensor, R: fx.get("input.R") as HostTensor };
  const out = execute(tg, { inputs, params }).outputs;
  const torchLoss = (fx.get("loss") as HostTensor).data[0];
  expect(Math.abs((out.get("loss") as HostTensor).data[0] - torchLoss)).toBeLessThan(2e-5 * Math.max(1, Math.abs(torchLoss)));
  let worst = 0;
  for (const c of compare) {
    const expected = rows(fx.get(`grad.${c.torch}`) as HostTensor, c.rows);
    worst = Math.max(worst, expectGradClose(out.get(`grad/${c.ours}`) as HostTensor, expected, `${c.torch} -> ${c.ours}`));
  }
  if (version === 2) {
    // torchvision zeroes the k third of V2's qkv bias on every forward: no gradient reaches it
    const k = rows(fx.get("grad.attn.qkv.bias") as HostTensor, [16, 32]);
    expect(Array.from(k.data).every((v) => v === 0)).toBe(true);
  }
  worst = Math.max(worst, expectGradClose(out.get("gradInput/x") as HostTensor, fx.get("gradInput.x") as HostTensor, "input x"));
  return worst;
}

class SimMIMObjective extends Module {
  readonly maskToken = maskTokenParameter(8);
  readonly head = new SimMIMHead(8, 4);
  loss(tokens: Map4, image: Map4, mask: Tensor<[number, 2, 2], "f32">): Tensor<[], "f32"> {
    const x = applyMaskToken(tokens, expandMask(mask, 2), this.maskToken);
    const pred = this.head.forward(x.permute([0, 3, 1, 2]) as Map4);
    return maskedL1Loss(pred, normalizePatches(image, 4), expandMask(mask, 8)) as Tensor<[], "f32">;
  }
}

const simmim = defineModel({
  name: "simmim",
  configs: { only: {} },
  defaultConfig: "only",
  create: (_c, o) => {
    const module = new SimMIMObjective();
    return instance({
      module,
      inputs: { tokens: spec([o.batch, 4, 4, 8]), image: spec([o.batch, 3, 16, 16]), mask: spec([o.batch, 2, 2]) },
      forward: ({ tokens, image, mask }) => ({ loss: module.loss(tokens, image, mask) }),
    });
  },
});

describe("PerceptNet block gradients against torchvision", () => {
  it("Swin V1 block (shifted, padded 6x6 -> 8x8): every parameter and the input", () => {
    expect(checkBlock(1)).toBeLessThan(2e-5);
  });

  it("Swin V2 block (shifted, padded; cosine attention, CPB MLP, q/v bias): every parameter and the input", () => {
    expect(checkBlock(2)).toBeLessThan(2e-5);
  });

  it("SimMIM loss: mask token, reconstruction head and the image (through the normalised target)", () => {
    const fx = readSafetensors(path.join(fixtures, "simmim.safetensors"));
    const tg = grad(traceModel(simmim, { batch: 2 }).graph, { loss: "loss", wrtInputs: ["tokens", "image"] });
    const names = ["maskToken", "head.proj.weight", "head.proj.bias"];
    const params = new Map(names.map((n) => [n, fx.get(`param.${n}`) as HostTensor]));
    const inputs = Object.fromEntries(["tokens", "image", "mask"].map((n) => [n, fx.get(`input.${n}`) as HostTensor]));
    const out = execute(tg, { inputs, params }).outputs;
    const torchLoss = (fx.get("loss") as HostTensor).data[0];
    expect(Math.abs((out.get("loss") as HostTensor).data[0] - torchLoss)).toBeLessThan(1e-5 * torchLoss);
    for (const n of names) expectGradClose(out.get(`grad/${n}`) as HostTensor, fx.get(`grad.${n}`) as HostTensor, n);
    expectGradClose(out.get("gradInput/image") as HostTensor, fx.get("gradInput.image") as HostTensor, "image");
    // masked tokens are replaced by the mask token, and the 1x1 head maps the others only to pixels
    // the loss ignores: no gradient reaches the tokens, on either side
    for (const d of [out.get("gradInput/tokens"), fx.get("gradInput.tokens")]) expect(d?.data.every((v) => v === 0)).toBe(true);
  });
});
