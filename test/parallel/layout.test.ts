// The pure parts of the strategies, in one process: the flat layout (padding, shards, decay runs),
// the FSDP unit rule (the planner's), gradient bucket boundaries and issue order, segmented execution
// (bit-identical to one execute) and the ZeRO-3 gather schedule.
import { describe, expect, it } from "vitest";
import { numel } from "../../compiler/ir/index.ts";
import { execute } from "../../runtime/cpu/index.ts";
import {
  assignBuckets,
  blockUnitOf,
  bucketSchedule,
  FlatLayout,
  gradReadiness,
  liveUnits,
  plannedPeakBytes,
  runSegments,
  segmentUnits,
  splitGraph,
  trainedParams,
  unitCuts,
} from "../../runtime/parallel/index.ts";
import { unitOf as plannerUnitOf } from "../../runtime/plan/profile.ts";
import { graphs, initialParams, samples } from "./model.ts";

const { forward, gradGraph } = graphs(3);
const { trained } = trainedParams(gradGraph);

describe("FlatLayout", () => {
  const params = [
    { name: "a.weight", shape: [2, 3] },
    { name: "a.bias", shape: [3] },
    { name: "blocks.0.w", shape: [5] },
    { name: "blocks.1.w", shape: [4] },
    { name: "head.weight", shape: [2, 2] },
  ];

  it("lays units end to end in parameter order, each padded to a multiple of the shard count", () => {
    const layout = new FlatLayout(params, 4, blockUnitOf);
    expect(layout.units.map((u) => [u.name, u.numel, u.padded, u.shardNumel, u.localOffset])).toEqual([
      ["", 13, 16, 4, 0], // a.weight, a.bias, head.weight: the root unit
      ["blocks.0", 5, 8, 2, 4],
      ["blocks.1", 4, 4, 1, 6],
    ]);
    expect(layout.shardNumel).toBe(7);
    expect(layout.paddedNumel).toBe(28);
    expect(layout.param("head.weight")).toMatchObject({ unit: 0, offset: 9, numel: 4 });
    // One unit (ZeRO-1): the whole model as one buffer padded to a multiple of the world size.
    const whole = new FlatLayout(params, 3);
    expect(whole.units.map((u) => [u.numel, u.padded])).toEqual([[22, 24]]);
  });

  it("shards and views round-trip the values; padding is zero", () => {
    const layout = new FlatLayout(params, 4, blockUnitOf);
    const value = (name: string) =>
      Float32Array.from({ length: numel(layout.param(name).shape) }, (_, i) => name.length * 100 + i);
    const shards = [0, 1, 2, 3].map((r) => layout.shardFrom(r, value));
    for (const u of layout.units) {
      const flat = new Float32Array(u.padded);
      for (const [r, s] of shards.entries()) flat.set(layout.local(u, s), r * u.shardNumel);
      for (const [name, view] of layout.views(u, flat)) expect([...view]).toEqual([...value(name)]);
      expect([...flat.subarray(u.numel)].every((x) => x === 0)).toBe(true);
    }
  });

  it("cuts each rank's shard into runs of one decay flag, covering it exactly", () => {
    const layout = new FlatLayout(params, 4, blockUnitOf);
    const decay = (name: string) => name.endsWith("weight");
    const runs = [0, 1, 2, 3].map((r) => layout.shardRuns(r, decay));
    // Root unit [a.weight 0..5 | a.bias 6..8 | head.weight 9..12 | pad 13..15]: rank 1 holds 4..7;
    // then blocks.0.w[2..3] and blocks.1.w[1] (no decay): runs merge across units.
    expect(runs[1]).toEqual([
      { start: 0, length: 2, decay: true },
      { start: 2, length: 5, decay: false },
    ]);
    // Rank 3: root 12..15 = head.weight[3] then padding; blocks.0.w has only padding there.
    expect(runs[3]).toEqual([
      { start: 0, length: 1, decay: true },
      { start: 1, length: 6, decay: false },
    ]);
    for (const rs of runs) {
      let at = 0;
      for (const r of rs) {
        expect(r.start).toBe(at);
        at += r.length;
      }
      expect(at).toBe(layout.shardNumel);
    }
  });

  it("uses the planner's unit rule: the deepest module prefix ending in an index", () => {
    const names = [
      "stages.2.blocks.5.attn.qkv.weight",
      "stages.0.downsample.norm.weight",
      "blocks.0.fc1.bias",
      "patch_embed.proj.weight",
      "head.weight",
      "decoder.layers.3.cross_attn.q.weight",
    ];
    for (const n of names) {
      expect(blockUnitOf(n)).toBe(plannerUnitOf(n.split(".").slice(0, -1).join(".")) ?? "");
    }
    expect(blockUnitOf("stages.2.blocks.5.attn.qkv.weight")).toBe("stages.2.blocks.5");
    expect(blockUnitOf("head.weight")).toBe("");
  });
});

describe("gradient buckets", () => {
  it("pack parameters in reverse order and close a bucket once it reaches the cap", () => {
    // 2048 B = 512 f32: the cap is crossed by each 512-element fc weight.
    const buckets = assignBuckets(trained, 2048);
    const blockTail = (b: number) => [`blocks.${b}.fc2.bias`, `blocks.${b}.fc2.weight`];
    const fc1 = (b: number) => [`blocks.${b}.fc1.bias`, `blocks.${b}.fc1.weight`];
    const norm = (b: number) => [`blocks.${b}.norm.bias`, `blocks.${b}.norm.weight`];
    expect(buckets.map((b) => b.params.map((p) => p.name))).toEqual([
      ["head.bias", "head.weight", "norm.bias", "norm.weight", ...blockTail(2)],
      fc1(2),
      [...norm(2), ...blockTail(1)],
      fc1(1),
      [...norm(1), ...blockTail(0)],
      fc1(0),
      [...norm(0), "embed.bias", "embed.weight"],
    ]);
    expect(buckets.map((b) => b.numel)).toEqual([628, 544, 560, 544, 560, 544, 176]);
    expect(buckets[0].params.map((p) => p.offset)).toEqual([0, 4, 68, 84, 100, 116]);
    // A parameter larger than the cap gets a bucket of its own; the default cap holds this model whole.
    // 64 B = 16 f32: head.bias (4) waits for head.weight (64); every other parameter reaches it alone.
    const tiny = assignBuckets(trained, 64);
    expect(tiny.map((b) => b.params.length)).toEqual([2, ...Array(trained.length - 2).fill(1)]);
    expect(assignBuckets(trained).length).toBe(1);
  });

  it("are issued in the order the backward finishes them", () => {
    const buckets = assignBuckets(trained, 2048);
    const ready = gradReadiness(
      gradGraph,
      trained.map((p) => p.name),
    );
    const schedule = bucketSchedule(buckets, ready);
    // Each bucket is ready at its last gradient's node; the order is by that node.
    for (const s of schedule) {
      expect(s.readyAfterNode).toBe(Math.max(...buckets[s.bucket].params.map((p) => ready.get(p.name) as number)));
    }
    expect(schedule.map((s) => s.readyAfterNode)).toEqual([...schedule.map((s) => s.readyAfterNode)].sort((a, b) => a - b));
    // For this sequential model, backward order is reverse parameter order: buckets go 0, 1, ..., 6,
    // and all but the last are ready before the backward ends (that is the overlap).
    expect(schedule.map((s) => s.bucket)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(schedule[5].readyAfterNode).toBeLessThan(gradGraph.nodes.length - 5);
  });
});

describe("segmented execution", () => {
  const inputs = samples(0, 3);
  const params = initialParams(forward);

  it("gives bit-identical outputs to one execute, whatever the cuts", async () => {
    const whole = execute(gradGraph, { inputs, params }).outputs;
    for (const cuts of [[], [40, 41, 90], Array.from({ length: gradGraph.nodes.length }, (_, i) => i)]) {
      const sg = splitGraph(gradGraph, cuts);
      const asked: string[] = [];
      const got = await runSegments(sg, inputs, {
        param: (name) => {
          asked.push(name);
          return params.get(name)!;
        },
      });
      expect([...got.keys()].sort()).toEqual([...whole.keys()].sort());
      for (const [name, t] of whole) expect([...got.get(name)!.data]).toEqual([...t.data]);
      expect(new Set(asked)).toEqual(new Set(trained.map((p) => p.name)));
    }
  });

  it("ZeRO-3 cuts give one segment per block in the forward and per block in the backward", () => {
    const layout = new FlatLayout(trained, 2, blockUnitOf);
    const unit = (name: string) => layout.param(name).unit;
    const sg = splitGraph(gradGraph, unitCuts(gradGraph, unit));
    const needs = segmentUnits(sg, unit);
    expect(layout.units.map((u) => u.name)).toEqual(["", "blocks.0", "blocks.1", "blocks.2"]);
    // embed | block 0 | 1 | 2 | norm + head (forward and backward) | block 2 | 1 | 0 (embed's weight
    // gradient reads only its input, so the root unit is not gathered again at the end).
    expect(needs).toEqual([[0], [1], [2], [3], [0], [3], [2], [1]]);
    const bytes = (u: number) => layout.units[u].padded * 4;
    expect(plannedPeakBytes(needs, bytes, 0)).toBe(1104 * 4);
    expect(plannedPeakBytes(needs, bytes, 1)).toBe(2 * 1104 * 4);
    expect(liveUnits(needs, 4, 1)).toEqual([0, 3]);
  });
});
