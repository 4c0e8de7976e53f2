// The real configs: xxs runs both forward paths (pre-training loss, segmentation logits) and
// classification on the CPU in seconds; Large's parameter count equals the count worked out from
// its config by hand (DESIGN.md's numbers) and lies in [12.0e9, 12.2e9].

import { describe, expect, it } from "vitest";
import { traceModel } from "../../compiler/dsl/index.ts";
import { build } from "../../compiler/frontend/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";
import perceptnet, { configs, type PerceptNetConfig } from "../../model/perceptnet.ts";
import { type HostTensor, hostTensor, initParams } from "../../runtime/cpu/index.ts";
import { randomNormal } from "../../runtime/run/index.ts";
import { runCpu } from "./helpers.ts";

function traceXxs(opts: {
  task?: string;
  batch?: number;
  imageSize?: [number, number];
  training?: boolean;
  computeDType?: "f32" | "bf16";
}) {
  return dce(cse(traceModel(perceptnet, { config: "xxs", batch: 2, ...opts }).graph));
}

const shapes = (g: ReturnType<typeof traceXxs>) => Object.fromEntries(g.inputs().map((n) => [n.attrs.name, n.shape]));
const finite = (t: HostTensor) => [...t.data].every(Number.isFinite);

describe("xxs: pre-training", () => {
  const graph = traceXxs({});
  const params = initParams(graph, 1);
  const image = randomNormal([2, 3, 64, 64], 5, "image");
  const mask = (values: number[]) => hostTensor([2, 2, 2], "f32", values);

  it("takes image [2,3,64,64] and a 32 px mask [2,2,2]; gives a scalar loss and the reconstruction", () => {
    expect(shapes(graph)).toEqual({ image: [2, 3, 64, 64], mask: [2, 2, 2] });
    const out = runCpu(
      graph,
      params,
      new Map([
        ["image", image],
        ["mask", mask([1, 0, 1, 1, 0, 1, 1, 0])],
      ]),
    );
    expect(out.get("loss")!.shape).toEqual([]);
    expect(out.get("reconstruction")!.shape).toEqual([2, 3, 64, 64]);
    expect(out.get("loss")!.data[0]).toBeGreaterThan(0);
    expect(finite(out.get("reconstruction")!)).toBe(true);
  });

  it("the loss reads masked pixels only: nothing masked -> exactly 0", () => {
    const out = runCpu(
      graph,
      params,
      new Map([
        ["image", image],
        ["mask", mask(new Array(8).fill(0))],
      ]),
    );
    expect(out.get("loss")!.data[0]).toBe(0);
  });

  it("with every patch masked the encoder sees only mask tokens: the reconstruction ignores the image", () => {
    const all = mask(new Array(8).fill(1));
    const a = runCpu(
      graph,
      params,
      new Map([
        ["image", image],
        ["mask", all],
      ]),
    ).get("reconstruction")!;
    const other = randomNormal([2, 3, 64, 64], 6, "image");
    const b = runCpu(
      graph,
      params,
      new Map([
        ["image", other],
        ["mask", all],
      ]),
    ).get("reconstruction")!;
    expect([...a.data]).toEqual([...b.data]);
  });

  it("sampleInputs gives a SimMIM mask with ceil(4 * 0.6) = 3 masked patches per image", () => {
    const s = perceptnet.sampleInputs!(
      configs.xxs,
      { task: "pretrain", batch: 2, training: false, imageSize: undefined, computeDType: "f32" },
      9,
    );
    expect(s.mask.shape).toEqual([2, 2, 2]);
    expect([...s.mask.data.slice(0, 4)].reduce((a, b) => a + b, 0)).toBe(3);
  });
});

describe("xxs: segmentation and classification", () => {
  it("segmentation logits at the input size, including sizes that need padding (62x50)", () => {
    const graph = traceXxs({ task: "seg", batch: 1, imageSize: [62, 50] });
    const out = runCpu(graph, initParams(graph, 2), new Map([["image", randomNormal([1, 3, 62, 50], 1, "image")]]));
    expect(out.get("seg")!.shape).toEqual([1, 150, 62, 50]);
    expect(finite(out.get("seg")!)).toBe(true);
  });

  it("training-mode segmentation adds a label input and the ignore-255 cross-entropy", () => {
    const graph = traceXxs({ task: "seg", batch: 1, training: true });
    expect(shapes(graph)).toEqual({ image: [1, 3, 64, 64], label: [1, 64, 64] });
    expect(graph.nodes.some((n) => n.op === "dropPath")).toBe(true);
    const ignored = hostTensor([1, 64, 64], "i32", new Int32Array(64 * 64).fill(255));
    const out = runCpu(
      graph,
      initParams(graph, 2),
      new Map([
        ["image", randomNormal([1, 3, 64, 64], 1, "image")],
        ["label", ignored],
      ]),
    );
    expect(out.get("loss")!.data[0]).toBe(0); // every pixel ignored
  });

  it("classification logits [B, 1000]", () => {
    const graph = traceXxs({ task: "classify" });
    const out = runCpu(graph, initParams(graph, 3), new Map([["image", randomNormal([2, 3, 64, 64], 1, "image")]]));
    expect(out.get("logits")!.shape).toEqual([2, 1000]);
  });

  it("bf16 compute tracks f32 (loss within 2%: bf16 keeps 8 mantissa bits, errors average over pixels)", () => {
    const f32 = traceXxs({});
    const bf16 = traceXxs({ computeDType: "bf16" });
    const params = initParams(f32, 4);
    const inputs = new Map([
      ["image", randomNormal([2, 3, 64, 64], 2, "image")],
      ["mask", hostTensor([2, 2, 2], "f32", [1, 1, 0, 1, 0, 1, 1, 1])],
    ]);
    const a = runCpu(f32, params, inputs).get("loss")!.data[0];
    const b = runCpu(bf16, params, inputs).get("loss")!.data[0];
    expect(bf16.nodes.some((n) => n.dtype === "bf16" && n.op === "matmul")).toBe(true);
    expect(Math.abs(a - b) / a).toBeLessThan(0.02);
  });
});

/** Parameters of PerceptNet (V2 blocks, pre-training) counted from the config, independently of the model code. */
function countPretrainParams(c: PerceptNetConfig): number {
  const dims = c.depths.map((_, s) => c.embedDim * 2 ** s);
  const hidden = (d: number) => d * c.mlpRatio;
  // qkv weight 3C^2, q/v biases 2C, proj C^2 + C, logit scale h, CPB MLP 2*512 + 512 + 512h, two norms 4C, MLP
  const block = (d: number, h: number) =>
    3 * d * d + 2 * d + d * d + d + h + 3 * 512 + 512 * h + 4 * d + 2 * d * hidden(d) + hidden(d) + d;
  let n = 3 * 16 * c.embedDim + c.embedDim + 2 * c.embedDim + c.embedDim; // patch conv, norm, mask token
  dims.forEach((d, s) => {
    n += c.depths[s] * block(d, c.heads[s]) + 2 * d; // blocks + stage output norm
    if (c.extraNorm?.stage === s) n += Math.floor(c.depths[s] / c.extraNorm.every) * 2 * d;
    if (s < 3) n += 8 * d * d + 4 * d; // V2 merge: Linear(4C, 2C) + LayerNorm(2C)
  });
  const D = c.decoder!.dim;
  const r = c.decoder!.ffnRatio;
  for (const d of dims) n += d * D + D + 2 * D + 9 * D * D + D; // lateral conv + GroupNorm, 3x3 output conv
  n += 3 * (3 * 2 * D + 4 * (D * D + D) + 2 * D + 2 * D * r * D + r * D + D); // cross blocks
  n += 4 * D * 9 * D + D + 2 * D; // fuse conv + GroupNorm
  return n + D * 48 + 48; // reconstruction 1x1 conv
}

describe("Large", () => {
  it("traces without weights; params = the hand count, in [12.0e9, 12.2e9]; components per stage", async () => {
    const r = await build("model/perceptnet.ts", { config: "large", typecheck: false, write: false });
    expect(r.task).toBe("pretrain");
    expect(r.stats.params).toBe(countPretrainParams(configs.large));
    expect(r.stats.params).toBeGreaterThanOrEqual(12.0e9);
    expect(r.stats.params).toBeLessThanOrEqual(12.2e9);
    const names = r.components.map((c) => c.name);
    for (const n of ["patchEmbed", "stages.0", "stages.3", "merges.2", "decoder", "reconstruction", "maskToken"])
      expect(names).toContain(n);
  });

  it("the small configs count as the hand formula and land near their nominal sizes", async () => {
    const sizes: Record<string, [number, number]> = { xxs: [0.6e6, 0.8e6], xs: [2.5e6, 3.1e6], s: [27e6, 33e6] };
    for (const [name, [lo, hi]] of Object.entries(sizes)) {
      const r = await build("model/perceptnet.ts", { config: name, typecheck: false, write: false });
      expect(r.stats.params, name).toBe(countPretrainParams(configs[name as "xxs"]));
      expect(r.stats.params, name).toBeGreaterThanOrEqual(lo);
      expect(r.stats.params, name).toBeLessThanOrEqual(hi);
    }
  });

  it("swin-t and swinv2-t have torchvision's parameter counts (V2: less the k third of qkv.bias)", async () => {
    const t = await build("model/perceptnet.ts", { config: "swin-t", typecheck: false, write: false });
    expect(t.stats.params).toBe(28_288_354); // torchvision Swin_T_Weights meta num_params
    const v2 = await build("model/perceptnet.ts", { config: "swinv2-t", typecheck: false, write: false });
    // Swin_V2_T_Weights: 28,351,570, which counts qkv.bias's k third (one C per block; torchvision zeroes it)
    expect(v2.stats.params).toBe(28_351_570 - (2 * 96 + 2 * 192 + 6 * 384 + 2 * 768));
  });
});
