// Whole PerceptNet: the fused xxs graph == the unfused one (pre-training, and segmentation in
// training mode on a size that needs window padding), forward and every gradient; and for xxs, s
// and large every window-attention block, FPN merge and cross-attention module is fused, checked
// against counts worked out from the config (not from the pass), through `ptc build --json`.
//
// Tolerances (f32): forward 1e-5 of each output's scale; gradients 1e-4 of each tensor's scale,
// floored at 1e-3 of its module's largest gradient (compareFused): a cross-attention query weight's
// gradient is ~1e-5 of its block's (near-uniform attention over 4 P5 tokens makes it a residue of
// cancelling terms), so the ~1e-7 rounding differences of the two forwards reach 4e-4 of its own
// scale while staying ~1e-8 of the block's. Measured worst with the floor: 2e-5 (a V2 logit scale).

import { describe, expect, it } from "vitest";
import { traceModel } from "../../compiler/dsl/index.ts";
import { cse, dce, fuse } from "../../compiler/passes/index.ts";
import perceptnet, { configs, type PerceptNetConfig } from "../../model/perceptnet.ts";
import { hostTensor } from "../../runtime/cpu/index.ts";
import { randomNormal } from "../../runtime/run/index.ts";
import { runPtc } from "../helpers/cli.ts";
import { compareFused, randomParams } from "./helpers.ts";

/** What the model has, from its config: one window attention per block; a decoder merges and cross-attends at every level but the top. */
function modelCounts(c: PerceptNetConfig, task: string) {
  const dense = task !== "classify" && c.decoder !== undefined;
  const levels = c.depths.length;
  return {
    windowAttention: c.depths.reduce((a, b) => a + b, 0),
    fpnMerge: dense ? levels - 1 : 0,
    crossAttention: dense ? levels - 1 : 0,
  };
}

describe("PerceptNet xxs: fused graph == unfused graph", () => {
  it("pre-training: loss, reconstruction and every parameter's gradient", () => {
    const g = dce(cse(traceModel(perceptnet, { config: "xxs", batch: 1 }).graph));
    const f = fuse(g);
    expect(f.counts).toEqual(modelCounts(configs.xxs, "pretrain"));
    const inputs = new Map([
      ["image", randomNormal([1, 3, 64, 64], 1, "image")],
      ["mask", hostTensor([1, 2, 2], "f32", [1, 0, 0, 1])],
    ]);
    const r = compareFused(g, f.graph, randomParams(g, 2, 1), inputs);
    expect(r.forward).toBeLessThan(1e-5);
    expect(r.gradients, r.worst).toBeLessThan(1e-4);
    for (const z of r.zero) expect(z).toMatch(/cross\.\d\.attn\.k\.bias$/);
  });

  it("segmentation, training mode, 64x56 (stage maps 16x14 .. 2x2 padded to whole windows)", () => {
    const g = dce(
      cse(traceModel(perceptnet, { config: "xxs", task: "seg", training: true, batch: 1, imageSize: [64, 56] }).graph),
    );
    const f = fuse(g);
    expect(f.counts).toEqual(modelCounts(configs.xxs, "seg"));
    expect(f.graph.nodes.filter((n) => n.op === "windowAttention" && n.attrs.padInput === true).length).toBeGreaterThan(0);
    const labels = Int32Array.from({ length: 64 * 56 }, (_, i) => (i * 37) % 150);
    const inputs = new Map([
      ["image", randomNormal([1, 3, 64, 56], 3, "image")],
      ["label", hostTensor([1, 64, 56], "i32", labels)],
    ]);
    const r = compareFused(g, f.graph, randomParams(g, 4, 1), inputs);
    expect(r.forward).toBeLessThan(1e-5);
    expect(r.gradients, r.worst).toBeLessThan(1e-4);
  });
});

describe("ptc build --json: fusions and HBM bytes", () => {
  const build = (args: string[]) => {
    const r = runPtc(["build", "model/perceptnet.ts", "--json", "--no-typecheck", "--out", "dist/test-fusion", ...args]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout);
  };

  for (const [config, task] of [
    ["xxs", "pretrain"],
    ["xxs", "seg"],
    ["xxs", "classify"],
    ["s", "pretrain"],
    ["large", "pretrain"],
  ] as const) {
    it(`${config} ${task}: every block, merge and cross-attention is fused; fusion lowers the estimated bytes`, () => {
      const s = build(["--config", config, "--task", task]);
      expect(s.fusions).toEqual(modelCounts(configs[config], task));
      const { forward, trainingStep } = s.hbmBytes;
      expect(forward.fused).toBeLessThan(forward.unfused);
      expect(trainingStep.fused).toBeLessThan(trainingStep.unfused);
      expect(s.ops.windowAttention).toBe(s.fusions.windowAttention);
      expect(s.ops.softmax ?? 0).toBe(0);
    });
  }

  it("--no-fuse keeps the graph unfused (same bytes reported for comparison)", () => {
    const fused = build([]);
    const s = build(["--no-fuse"]);
    expect(s.fusions).toEqual({ windowAttention: 0, fpnMerge: 0, crossAttention: 0 });
    expect(s.ops.windowAttention).toBeUndefined();
    expect(s.ops.softmax).toBe(modelCounts(configs.xxs, "pretrain").windowAttention + 3);
    expect(s.nodes).toBeGreaterThan(fused.nodes);
    expect(s.hbmBytes).toEqual(fused.hbmBytes);
  });

  it("the human summary has a fusions row and forward / training-step byte rows", () => {
    const r = runPtc(["build", "model/perceptnet.ts", "--no-typecheck", "--out", "dist/test-fusion"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/fusions\s+windowAttention 8 · fpnMerge 3 · crossAttention 3/);
    expect(r.stdout).toMatch(/hbm bytes\s+forward [0-9.]+ MiB fused \/ [0-9.]+ MiB unfused \(0\.\d\dx\)/);
    expect(r.stdout).toMatch(/training step [0-9.]+ MiB fused \/ [0-9.]+ MiB unfused/);
  });
});
