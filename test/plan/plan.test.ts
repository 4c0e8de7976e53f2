import { describe, expect, it } from "vitest";
import { Graph } from "../../compiler/ir/index.ts";
import type { ModelProfile, PlanRequest } from "../../runtime/plan/index.ts";
import { GPUS, memoryPerGpu, plan, profileGraph, runCost, trafficPerGpu, unitOf } from "../../runtime/plan/index.ts";

const profile: ModelProfile = {
  params: 1e9,
  flopsPerSample: 1e12,
  activationBytes: 1e9,
  checkpointBoundaryBytes: 1e8,
  largestUnitBytes: 2e8,
  outsideUnitBytes: 5e7,
  largestUnitParams: 5e7,
  outsideUnitParams: 2e7,
  units: 10,
};
const a100 = GPUS["a100-80gb"];
const cluster = { gpus: 16, gpusPerNode: 8 };

const request = (over: Partial<PlanRequest> = {}): PlanRequest => ({
  profile,
  gpu: a100,
  gpus: 16,
  nodes: 2,
  globalBatch: 256,
  accum: 4,
  strategy: "auto",
  mfu: 0.5,
  overlap: 0.8,
  usableMemory: 0.9,
  checkpointing: "auto",
  ...over,
});

describe("planner arithmetic", () => {
  it("memory per GPU follows the bytes-per-parameter table for each strategy", () => {
    // micro-batch 4, no checkpointing: activations 4 x 1e9
    expect(memoryPerGpu("ddp", profile, cluster, 4, false)).toEqual({
      weights: 6e9,
      gradients: 4e9,
      optimizer: 8e9,
      activations: 4e9,
      total: 22e9,
    });
    // zero1: the gradient plan's outputs (read after it), the full sum, the reduced shard
    const z1 = memoryPerGpu("zero1", profile, cluster, 4, false);
    expect([z1.weights, z1.gradients, z1.optimizer]).toEqual([2e9 + 4e9 / 16, 4e9 + 4e9 + 4e9 / 16, 8e9 / 16]);
    // zero2 streams its gradients: the shard, one unit's staging (the largest unit, 5e7 > the root's
    // 2e7) and the gradient plan's outputs still live (the root unit's and one block's)
    const streamed = 4e9 / 16 + 4 * 5e7 + 4 * (2e7 + 5e7);
    const z2 = memoryPerGpu("zero2", profile, cluster, 4, false);
    expect([z2.weights, z2.gradients, z2.optimizer]).toEqual([2e9 + 4e9 / 16, streamed, 8e9 / 16]);
    // accumulating: a second shard holds a later micro-batch's reduce-scatter before it is added
    expect(memoryPerGpu("zero2", profile, cluster, 4, false, 4).gradients).toBe(streamed + 4e9 / 16);
    // a root unit larger than any block sets the staging buffer
    const rooted = memoryPerGpu("zero2", { ...profile, outsideUnitParams: 1e8 }, cluster, 4, false);
    expect(rooted.gradients).toBe(4e9 / 16 + 4 * 1e8 + 4 * (1e8 + 5e7));
    const z3 = memoryPerGpu("zero3", profile, cluster, 4, true);
    expect([z3.weights, z3.gradients, z3.optimizer]).toEqual([4e9 / 16 + 4 * 5e7, streamed, 8e9 / 16]);
    // checkpointing keeps block inputs + one block + what is outside blocks
    expect(z3.activations).toBe(4 * (1e8 + 2e8 + 5e7));
    // hsdp as the GPU runtime runs it: zero2 sharded inside a node (8 GPUs) only
    const h = memoryPerGpu("hsdp", profile, cluster, 4, false);
    expect([h.weights, h.gradients, h.optimizer]).toEqual([2e9 + 4e9 / 8, 4e9 / 8 + 4 * 5e7 + 4 * (2e7 + 5e7), 8e9 / 8]);
  });

  it("communication volumes are the ring-collective volumes of each strategy", () => {
    // As the device runtime issues them: gradients reduced in f32, parameters gathered in bf16.
    const g = 4e9; // f32 gradients: 4 bytes x 1e9
    const w = 2e9; // bf16 parameters: 2 bytes x 1e9
    expect(trafficPerGpu("ddp", profile, cluster, 4)).toEqual({ intraNodeBytes: 0, interNodeBytes: 2 * (15 / 16) * g });
    expect(trafficPerGpu("zero1", profile, cluster, 4).interNodeBytes).toBeCloseTo((15 / 16) * g + (15 / 16) * w, 0);
    expect(trafficPerGpu("zero2", profile, cluster, 4).interNodeBytes).toBeCloseTo(4 * (15 / 16) * g + (15 / 16) * w, 0);
    expect(trafficPerGpu("zero3", profile, cluster, 4).interNodeBytes).toBeCloseTo(4 * (15 / 16) * (2 * w + g), 0);
    // hsdp: zero2 inside the node (8 GPUs), the f32 gradient shard all-reduced across the 2 nodes
    const h = trafficPerGpu("hsdp", profile, cluster, 4);
    expect(h.intraNodeBytes).toBeCloseTo(4 * (7 / 8) * g + (7 / 8) * w, 0);
    expect(h.interNodeBytes).toBeCloseTo(2 * (1 / 2) * (g / 8), 0);
    // one node: everything stays on NVLink
    expect(trafficPerGpu("ddp", profile, { gpus: 8, gpusPerNode: 8 }, 1)).toEqual({
      intraNodeBytes: 2 * (7 / 8) * g,
      interNodeBytes: 0,
    });
  });

  it("step time = compute + communication not hidden under compute", () => {
    const p = plan(request({ strategy: "ddp", checkpointing: "off" }));
    const s = p.all[0];
    const compute = (4 * 4 * 1e12 * 3) / (312e12 * 0.5);
    const comm = (2 * (15 / 16) * 4e9) / 25e9; // f32 gradients all-reduced over the network
    expect(p.microBatch).toBe(4);
    expect(s.computeSeconds).toBeCloseTo(compute, 12);
    expect(s.commSeconds).toBeCloseTo(comm, 12);
    expect(s.stepSeconds).toBeCloseTo(compute + Math.max(0, comm - 0.8 * compute), 12);
    expect(s.imagesPerSecond).toBeCloseTo(256 / s.stepSeconds, 9);
  });

  it("auto picks the fastest strategy that fits, and reports when nothing fits", () => {
    const p = plan(request());
    const fitting = p.all.filter((s) => s.fits);
    expect(p.chosen).toBeDefined();
    expect(p.chosen?.stepSeconds).toBe(Math.min(...fitting.map((s) => s.stepSeconds)));
    const huge = plan(request({ profile: { ...profile, params: 1e12, largestUnitParams: 1e11 } }));
    expect(huge.chosen).toBeUndefined();
  });

  it("rejects a batch recipe that does not divide, naming the flag", () => {
    expect(() => plan(request({ globalBatch: 100 }))).toThrow(/--global-batch|not a multiple/);
    expect(() => plan(request({ nodes: 3 }))).toThrow(/do not split evenly/);
  });

  it("costs a run in steps, hours and GPU-hours; the paper's 64 A100 x 3 weeks is 32,256 GPU-hours", () => {
    const p = plan(request({ gpus: 64, nodes: 8, globalBatch: 2048 }));
    const r = runCost(p, 300e6, 21);
    expect(r.steps).toBe(Math.ceil(300e6 / 2048));
    expect(r.gpuHours).toBeCloseTo(r.wallHours * 64, 9);
    expect(r.budget?.gpuHours).toBe(32256);
  });
});

describe("model profile from a graph", () => {
  it("counts activations per block from module scopes", () => {
    const g = new Graph();
    const x = g.add("input", [], { name: "x", shape: [4, 8], dtype: "f32" }).id;
    const w = g.add("param", [], { name: "blocks.0.fc.weight", shape: [8, 8], dtype: "f32", init: "zeros", initArgs: [] }).id;
    const w1 = g.add("param", [], { name: "blocks.1.fc.weight", shape: [8, 8], dtype: "f32", init: "zeros", initArgs: [] }).id;
    const s = g.add("param", [], { name: "stem.scale", shape: [4, 8], dtype: "f32", init: "ones", initArgs: [] }).id;
    const a = g.add("matmul", [g.add("mul", [x, s], {}, undefined, "stem").id, w], {}, undefined, "blocks.0.fc").id;
    const b = g.add("gelu", [a], { approximate: "none" }, undefined, "blocks.0").id;
    const c = g.add("matmul", [b, w1], {}, undefined, "blocks.1.fc").id;
    const d = g.add("reshape", [c], { shape: [32] }, undefined, "blocks.1").id; // a view: not kept
    g.setOutput("y", g.add("exp", [d], {}, undefined, "head").id);
    const p = profileGraph(g, 2);
    expect(unitOf("stages.2.blocks.5.attn.qkv")).toBe("stages.2.blocks.5");
    expect(unitOf("decoder.lateral")).toBeUndefined();
    expect(p.units).toBe(2);
    expect(p.activationBytes).toBe(5 * 32 * 2); // mul, matmul, gelu, matmul, exp outputs
    expect(p.largestUnitBytes).toBe(2 * 32 * 2);
    expect(p.outsideUnitBytes).toBe(2 * 32 * 2); // the stem's mul and the head's exp
    expect(p.checkpointBoundaryBytes).toBe(2 * 32 * 2); // the stem's output into block 0, gelu output into block 1
    expect(p.largestUnitParams).toBe(64);
    expect(p.outsideUnitParams).toBe(32); // stem.scale: the runtime's root unit
  });
});
