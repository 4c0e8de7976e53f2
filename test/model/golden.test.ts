// PerceptNet's layers against PyTorch (fixtures: test/golden/model/gen_swin.py). torchvision's own
// Swin classes are the oracle for the blocks, patch merging and whole SwinTransformers, loaded
// through our torchvision name mapping; a PyTorch re-implementation on fixed random weights is the
// oracle for the decoder, SimMIM loss and segmentation head.
//
// Tolerance: 1e-4 relative to the output's scale (max |ours - torch| / max |torch|), in f32. Both
// sides compute in f32 with different summation orders (we accumulate matmuls in f64), so errors
// of a few f32 ulps per op are expected; measured maxima are printed and are ~1e-6.

import { afterAll, describe, expect, it } from "vitest";
import type { WeightFormat } from "../../compiler/dsl/index.ts";
import { SwinBlockV1, SwinBlockV2 } from "../../model/perceptnet/blocks.ts";
import { PatchMergingV1, PatchMergingV2 } from "../../model/perceptnet/patches.ts";
import { torchvisionBlockTargets, torchvisionMergeTargets } from "../../model/perceptnet/torchvision-names.ts";
import { configs, type PerceptNetConfig } from "../../model/perceptnet.ts";
import { loadWeights } from "../../runtime/run/index.ts";
import { golden, manifest, relativeError, runCpu, traceModule, tracePerceptNet } from "./helpers.ts";

const TOLERANCE = 1e-4;
const measured: Record<string, number> = {};

function check(name: string, actual: Parameters<typeof relativeError>[0], expected: Parameters<typeof relativeError>[1]) {
  const err = relativeError(actual, expected);
  measured[name] = err;
  expect(err, `${name}: max error relative to scale`).toBeLessThan(TOLERANCE);
}

afterAll(() => {
  console.log(
    `golden max relative errors:\n${Object.entries(measured)
      .map(([k, v]) => `  ${k.padEnd(26)} ${v.toExponential(2)}`)
      .join("\n")}`,
  );
});

const blockFormat = (version: "v1" | "v2"): WeightFormat => ({
  description: "torchvision SwinTransformerBlock state_dict",
  map: (name, shape) => torchvisionBlockTargets(name, shape, version),
});

describe("torchvision parity: blocks and patch merging", () => {
  const blockCases = Object.keys(manifest).filter((k) => manifest[k].kind === "block");
  it("has the six block cases (V1/V2, with and without shift, padded, one-axis shift)", () => {
    expect(blockCases.length).toBe(6);
  });
  for (const name of blockCases) {
    it(`${name}`, () => {
      const g = golden(name);
      const { version, dim, heads, window, shift, mlpRatio } = g.info as unknown as {
        version: "v1" | "v2";
        dim: number;
        heads: number;
        window: number;
        shift: number;
        mlpRatio: number;
      };
      const o = { dim, heads, window, shift, mlpRatio, dropPath: 0 };
      const block = version === "v1" ? new SwinBlockV1(o) : new SwinBlockV2(o);
      const x = g.inputs.get("x")!;
      const graph = traceModule(block, x.shape, (m, t) => m.forward(t));
      const params = loadWeights(graph, g.weights, g.weightsPath, blockFormat(version));
      check(name, runCpu(graph, params, new Map([["x", x]])).get("y")!, g.expected.get("y")!);
    });
  }

  for (const name of ["merge_v1", "merge_v2"]) {
    it(name, () => {
      const g = golden(name);
      const merge = name === "merge_v1" ? new PatchMergingV1(8) : new PatchMergingV2(8);
      const x = g.inputs.get("x")!;
      const graph = traceModule(merge, x.shape, (m, t) => m.forward(t));
      const format: WeightFormat = { description: "torchvision PatchMerging", map: (n) => torchvisionMergeTargets(n) };
      const params = loadWeights(graph, g.weights, g.weightsPath, format);
      check(name, runCpu(graph, params, new Map([["x", x]])).get("y")!, g.expected.get("y")!);
    });
  }
});

/** The fixture's SwinTransformer sizes as a PerceptNet config (classification, torchvision rules). */
function swinConfig(name: string): PerceptNetConfig {
  const c = manifest[name] as unknown as {
    blocks: "v1" | "v2";
    embedDim: number;
    depths: number[];
    heads: number[];
    window: number;
    classes: number;
  };
  const base = configs[c.blocks === "v1" ? "swin-t" : "swinv2-t"];
  return { ...base, embedDim: c.embedDim, depths: c.depths, heads: c.heads, window: c.window, classes: c.classes };
}

describe("torchvision parity: whole SwinTransformer (logits)", () => {
  for (const name of ["swin_v1", "swin_v2"]) {
    it(`${name}: torchvision state_dict loads unchanged and gives the same logits`, () => {
      const g = golden(name);
      const image = g.inputs.get("image")!;
      const config = swinConfig(name);
      const { def, traced, graph } = tracePerceptNet(config, {
        batch: image.shape[0],
        imageSize: [image.shape[2], image.shape[3]],
      });
      expect(traced.task).toBe("classify");
      const format = def.weightFormats!(config).torchvision;
      const params = loadWeights(graph, g.weights, g.weightsPath, format);
      check(name, runCpu(graph, params, g.inputs).get("logits")!, g.expected.get("logits")!);
    });
  }
});

/** The PerceptNet fixture's sizes on top of the xxs config. */
function perceptnetConfig(name: string): PerceptNetConfig {
  const c = manifest[name] as unknown as {
    embedDim: number;
    depths: number[];
    heads: number[];
    window: number;
    extraEvery: number;
    decoderDim: number;
    decoderHeads: number;
    groups: number;
    ffnRatio: number;
    segClasses: number;
    normTargetPatch?: number;
  };
  return {
    ...configs.xxs,
    embedDim: c.embedDim,
    depths: c.depths,
    heads: c.heads,
    window: c.window,
    extraNorm: { stage: 2, every: c.extraEvery },
    decoder: { dim: c.decoderDim, heads: c.decoderHeads, groups: c.groups, ffnRatio: c.ffnRatio },
    segClasses: c.segClasses,
    simmim: { ...configs.xxs.simmim, normTargetPatch: c.normTargetPatch },
  };
}

describe("PerceptNet decoder and heads vs a PyTorch re-implementation", () => {
  // The weights file holds both heads; each task's graph takes its own.
  const otherHead = {
    pretrain: (n: string) => n.startsWith("segHead."),
    seg: (n: string) => n.startsWith("reconstruction.") || n === "maskToken",
  };
  for (const name of ["perceptnet_pretrain", "perceptnet_pretrain_norm", "perceptnet_seg"]) {
    it(name, () => {
      const g = golden(name);
      const task = (g.info as unknown as { task: "pretrain" | "seg" }).task;
      const image = g.inputs.get("image")!;
      const config = perceptnetConfig(name);
      const { graph } = tracePerceptNet(config, { task, batch: image.shape[0], imageSize: [image.shape[2], image.shape[3]] });
      const weights = new Map([...g.weights].filter(([n]) => !otherHead[task](n)));
      const params = loadWeights(graph, weights, g.weightsPath);
      const inputs = new Map([...g.inputs].filter(([n]) => graph.inputs().some((i) => i.attrs.name === n)));
      const outputs = runCpu(graph, params, inputs);
      for (const [out, want] of g.expected) check(`${name}.${out}`, outputs.get(out)!, want);
    });
  }
});
