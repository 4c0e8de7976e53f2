// Reductions overlapping the backward, and hybrid sharding, on devices (runtime/train/device-buckets.ts,
// device-hsdp.ts): PTX emulator ranks in this process, collectives staged through CpuCollectives
// over loopback TCP (the test path; on GPUs the same engine issues the same collectives to NCCL on a
// communication stream). Each run must train like the single-process device engine on the same
// global batch: rank r's micro-batch k is the single process's micro-batch k x world + r.
import { describe, expect, it } from "vitest";
import type { Graph } from "../../compiler/ir/index.ts";
import { initParams } from "../../runtime/cpu/index.ts";
import { lastWriters } from "../../runtime/train/device-buckets.ts";
import { DeviceDataParallelEngine, type DeviceParallelOptions } from "../../runtime/train/device-parallel.ts";
import { DeviceEngine } from "../../runtime/train/device-step.ts";
import type { OptimizerState } from "../../runtime/train/step.ts";
import { keepEngines, world } from "../helpers/cpu-world.ts";
import { expectSameTraining, type Run, trainAlone, trainRanks } from "./rank-runs.ts";
import { batch, regressionGraph, seedOf } from "./regression-graph.ts";

const settings = { weightDecay: 0.05, clip: 1 };
const STEPS = 2;
const LR = 1e-2;
const feeds = { steps: STEPS, lr: LR, batch, seed: seedOf };

async function single(graph: Graph, microBatches: number): Promise<Run> {
  const engine = await DeviceEngine.create("ptx-emu", graph, microBatches, settings, {
    params: initParams(graph, 3),
    m: new Map(),
    v: new Map(),
    optimizerStep: 0,
  });
  const run = await trainAlone(engine, microBatches, feeds);
  await engine.dispose();
  return run;
}

async function parallel(
  graph: Graph,
  n: number,
  accum: number,
  options: Omit<DeviceParallelOptions, "host">,
): Promise<{ runs: Run[]; engines: DeviceDataParallelEngine[] }> {
  const ranks = await world(n);
  const engines = await Promise.all(
    ranks.map((host) =>
      DeviceDataParallelEngine.create(
        "ptx-emu",
        graph,
        accum,
        settings,
        { host, ...options },
        // Every rank but 0 starts from other weights: rank 0's must win (broadcast).
        { params: initParams(graph, 3 + host.rank), m: new Map(), v: new Map(), optimizerStep: 0 },
      ),
    ),
  );
  keepEngines(...engines);
  return { runs: await trainRanks(engines, accum, feeds), engines };
}

function expectIdenticalState(a: OptimizerState, b: OptimizerState, what: string): void {
  for (const part of ["params", "m", "v"] as const)
    for (const [name, t] of a[part]) expect(b[part].get(name)?.data, `${what} ${part} ${name}`).toEqual(t.data);
}

describe("ddp on devices: gradient buckets reduced while the backward runs", () => {
  it("issues each bucket right after the last launch that writes its gradients, and trains like one process", async () => {
    const graph = regressionGraph(false);
    const ACCUM = 2;
    const want = await single(graph, 2 * ACCUM);
    // A 300-byte cap: head.weight (4 KiB) alone; norm.weight + fc1.bias (512 B); fc1.weight alone.
    const { runs, engines } = await parallel(graph, 2, ACCUM, { strategy: "ddp", bucketCapBytes: 300 });
    for (const r of runs) expectSameTraining(r, want, "ddp buckets");
    expectIdenticalState(runs[0].state, runs[1].state, "rank 1 vs rank 0");

    const e = engines[0];
    const buckets = e.buckets;
    if (!buckets) throw new Error("ddp has buckets");
    const names = buckets.schedule.map((b) => b.params.map((p) => p.name));
    expect(names).toEqual([["head.weight"], ["blocks.0.fc1.bias", "blocks.0.norm.weight"], ["blocks.0.fc1.weight"]]);
    // Independently of lastWriters: the launches whose `writes` name a buffer sharing the gradient
    // output's storage (outputs are often views, e.g. a reshape, of the buffer a kernel writes).
    const plan = e.gradientPlan.plan;
    const last = plan.launches.length - 1;
    const root = (id: number): number => {
      const a = plan.buffers.find((x) => x.id === id)?.aliasOf;
      return a ? root(a.buffer) : id;
    };
    for (const b of buckets.schedule) {
      for (const p of b.params) {
        const r = root(plan.outputs[`grad/${p.name}`]);
        const writers = plan.launches.flatMap((l, i) => (l.writes.some((w) => root(w) === r) ? [i] : []));
        expect(writers.length, p.name).toBeGreaterThan(0);
        expect(b.readyAfter, p.name).toBeGreaterThanOrEqual(Math.max(...writers));
      }
      // And nothing earlier would do: the bucket's latest gradient is written exactly there.
      expect(
        Math.max(...b.params.map((p) => lastWriters(e.gradientPlan, [`grad/${p.name}`]).get(`grad/${p.name}`) as number)),
      ).toBe(b.readyAfter);
    }
    // The head's gradient (last layer) is final long before the first block's, and both buckets
    // that do not hold the last gradient are issued before the gradient plan's last launch.
    const ready = buckets.schedule.map((b) => b.readyAfter);
    expect(ready[0]).toBeLessThan(ready[2]);
    expect(ready[0]).toBeLessThan(last);
    expect(ready[1]).toBeLessThan(last);
    // What the last step issued: every bucket once, in schedule order, at its readiness.
    expect(buckets.lastIssued).toEqual(buckets.schedule.map((b) => ({ bucket: b.index, afterLaunch: b.readyAfter })));

    // One bucket (the default 25 MiB cap) issues after the last gradient: the same sums, bit for bit.
    const whole = await parallel(graph, 2, ACCUM, { strategy: "ddp" });
    expect(whole.engines[0].buckets?.schedule.length).toBe(1);
    expectIdenticalState(whole.runs[0].state, runs[0].state, "one bucket vs three");
  });
});

describe("zero2 on devices: each unit reduce-scattered while the backward runs", () => {
  // (test/train/device-parallel.test.ts checks zero2's numbers, which run through these hooks.)
  it("issues the head's unit before the block's, each right after its last gradient write", async () => {
    const graph = regressionGraph(false);
    const { engines } = await parallel(graph, 2, 1, { strategy: "zero2" });
    const e = engines[0];
    const scatters = e.unitScatters;
    if (!scatters) throw new Error("zero2 scatters per unit");
    // Units: blocks.0 (index 0: fc1.weight, fc1.bias, norm.weight) and the root (index 1: head.weight).
    expect(e.layout.units.map((u) => u.name)).toEqual(["blocks.0", ""]);
    const ready = (names: string[]) =>
      Math.max(...names.map((n) => lastWriters(e.gradientPlan, [`grad/${n}`]).get(`grad/${n}`) as number));
    expect(scatters.ready).toEqual([
      ready(["blocks.0.fc1.weight", "blocks.0.fc1.bias", "blocks.0.norm.weight"]),
      ready(["head.weight"]),
    ]);
    expect(scatters.ready[1]).toBeLessThan(scatters.ready[0]);
    expect(scatters.ready[1]).toBeLessThan(e.gradientPlan.plan.launches.length - 1);
    expect(scatters.lastIssued).toEqual([
      { unit: 1, afterLaunch: scatters.ready[1] },
      { unit: 0, afterLaunch: scatters.ready[0] },
    ]);
  });
});

describe("hsdp on devices: sharded inside a node, replicated across nodes", () => {
  it("4 ranks as 2 nodes x 2 train like one process (f32), and shard over the node only", async () => {
    const graph = regressionGraph(false);
    const ACCUM = 2;
    const want = await single(graph, 4 * ACCUM);
    const { runs, engines } = await parallel(graph, 4, ACCUM, { strategy: "hsdp", shardSize: 2 });
    for (const [i, r] of runs.entries()) expectSameTraining(r, want, `hsdp rank ${i}`);
    for (const r of runs.slice(1)) expectIdenticalState(runs[0].state, r.state, "hsdp ranks");
    expect(engines[0].description).toMatch(/4 ranks \(hsdp: shard groups of 2, weights replica f32; collectives staged/);
    // Two shards per unit (blocks.0: 2176 elements, the root: 1024), not four.
    const mem = engines[0].memory();
    expect(mem.masterShardBytes).toBe(((2176 + 1024) / 2) * 4);
    expect(mem.optimizerBytes).toBe(2 * ((2176 + 1024) / 2) * 4);
  });

  it("bf16 compute: the bf16 replica is all-gathered inside the node; the same training as one process", async () => {
    const graph = regressionGraph(true);
    const want = await single(graph, 4);
    const { runs, engines } = await parallel(graph, 4, 1, { strategy: "hsdp", shardSize: 2 });
    expect(engines[0].replicaDtype).toBe("bf16");
    for (const [i, r] of runs.entries()) expectSameTraining(r, want, `hsdp bf16 rank ${i}`);
  });

  it("a shard size that does not divide the world is a one-line error naming --shard-size", async () => {
    const graph = regressionGraph(false);
    const ranks = await world(2);
    const tries = ranks.map((host) =>
      DeviceDataParallelEngine.create(
        "ptx-emu",
        graph,
        1,
        settings,
        { host, strategy: "hsdp", shardSize: 3 },
        { params: initParams(graph, 3), m: new Map(), v: new Map(), optimizerStep: 0 },
      ),
    );
    for (const t of tries) await expect(t).rejects.toThrow(/the shard size 3 must divide the world size 2/);
  });
});
