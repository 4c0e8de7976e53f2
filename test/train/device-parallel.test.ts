// The device data-parallel engine (runtime/train/device-parallel.ts) with two ranks in this process:
// two PTX emulator devices, collectives staged through CpuCollectives over loopback TCP (the test
// path; on GPUs the same engine issues the same collectives to NCCL). Each strategy must train like
// the single-process device engine (DeviceEngine) on the same global batch: rank r's micro-batch k
// is the single process's micro-batch k x world + r, with its dropout seed.
import { describe, expect, it } from "vitest";
import type { Graph } from "../../compiler/ir/index.ts";
import { type HostTensor, initParams } from "../../runtime/cpu/index.ts";
import { readOnlyAsBf16, withBf16Params } from "../../runtime/train/device-graphs.ts";
import { DeviceDataParallelEngine, type DeviceStrategy } from "../../runtime/train/device-parallel.ts";
import { DeviceEngine } from "../../runtime/train/device-step.ts";
import { keepEngines, local, world } from "../helpers/cpu-world.ts";
import { expectSameTraining, type Run, trainAlone, trainRanks } from "./rank-runs.ts";
import { batch, regressionGraph, seedOf } from "./regression-graph.ts";

const settings = { weightDecay: 0.05, clip: 1 };
const WORLD = 2;
// 3 micro-batches per rank: accumulation on the device, and a gradient scale of 1/6 (not a power of two).
const ACCUM = 3;
const STEPS = 3;
const LR = 1e-2;
const feeds = { steps: STEPS, lr: LR, batch, seed: seedOf };

async function single(graph: Graph): Promise<Run> {
  const fresh = initParams(graph, 3);
  const engine = await DeviceEngine.create("ptx-emu", graph, WORLD * ACCUM, settings, {
    params: fresh,
    m: new Map(),
    v: new Map(),
    optimizerStep: 0,
  });
  const run = await trainAlone(engine, WORLD * ACCUM, feeds);
  await engine.dispose();
  return run;
}

async function parallel(graph: Graph, strategy: DeviceStrategy): Promise<{ runs: Run[]; engines: DeviceDataParallelEngine[] }> {
  const ranks = await world(WORLD);
  const engines = await Promise.all(
    ranks.map((host) =>
      DeviceDataParallelEngine.create(
        "ptx-emu",
        graph,
        ACCUM,
        settings,
        { host, strategy },
        {
          // Rank 1 starts from other weights: rank 0's must win (broadcast).
          params: initParams(graph, 3 + host.rank),
          m: new Map(),
          v: new Map(),
          optimizerStep: 0,
        },
      ),
    ),
  );
  keepEngines(...engines);
  return { runs: await trainRanks(engines, ACCUM, feeds), engines };
}

describe("DeviceDataParallelEngine: 2 ranks on the PTX emulator, collectives staged through the host", () => {
  it("ddp, zero1 and zero2 train like the single-process device engine on the same global batch (f32, dropout, clipping)", async () => {
    const graph = regressionGraph(false);
    const want = await single(graph);
    for (const strategy of ["ddp", "zero1", "zero2"] as const) {
      const { runs, engines } = await parallel(graph, strategy);
      expect(engines[0].replicaDtype).toBe("f32");
      for (const r of runs) expectSameTraining(r, want, strategy);
      // Every rank ends with the same full state (checkpoints are rank 0's).
      for (const part of ["params", "m", "v"] as const)
        for (const [name, t] of runs[0].state[part])
          expect(runs[1].state[part].get(name)?.data, `${strategy} ${part} ${name}`).toEqual(t.data);
    }
  });

  it("zero2 with bf16 compute keeps a bf16 weights replica and all-gathers bf16: the same training as one process", async () => {
    const graph = regressionGraph(true);
    const names = new Set(graph.params().map((p) => String(p.attrs.name)));
    expect(readOnlyAsBf16(graph, names)).toBe(true);
    expect(readOnlyAsBf16(regressionGraph(false), names)).toBe(false);
    // The rewrite: bf16 parameters in place of their casts, nothing else changed.
    const rewritten = withBf16Params(graph, names);
    expect(rewritten.params().map((p) => p.dtype)).toEqual(["bf16", "bf16", "bf16", "bf16"]);
    expect(rewritten.nodes.length).toBe(graph.nodes.length - 4);
    const want = await single(graph);
    const { runs, engines } = await parallel(graph, "zero2");
    expect(engines[0].replicaDtype).toBe("bf16");
    expect(engines[0].description).toMatch(
      /2 ranks \(zero2, weights replica bf16; collectives staged through the host \(test path\)\)/,
    );
    // The plan casts the f32 master shard to bf16 exactly as the single-process graph casts the
    // whole master (nearest even), and the all-gather moves those bits unchanged: the gradient plan
    // sees the same bf16 weights, so the f32 bound above holds.
    for (const r of runs) expectSameTraining(r, want, "zero2 bf16");
  });

  it("memory per rank: ZeRO shards the masters and moments; the bf16 replica is half the f32 one", async () => {
    const graph = regressionGraph(true);
    const sizes: Record<string, ReturnType<DeviceDataParallelEngine["memory"]>> = {};
    for (const strategy of ["ddp", "zero1", "zero2"] as const) {
      const ranks = await world(WORLD);
      const engines = await Promise.all(
        ranks.map((host) =>
          DeviceDataParallelEngine.create(
            "ptx-emu",
            graph,
            ACCUM,
            settings,
            { host, strategy },
            {
              params: initParams(graph, 3),
              m: new Map(),
              v: new Map(),
              optimizerStep: 0,
            },
          ),
        ),
      );
      keepEngines(...engines);
      sizes[strategy] = engines[0].memory();
    }
    // 32x64 + 64 + 64 + 64x16 = 3200 parameters, each a multiple of 64 already (ddp: one unit);
    // ZeRO: units blocks.0 (2048+64+64 = 2176) and the root (1024), each a multiple of 2 x 64.
    expect(sizes.ddp.replicaBytes).toBe(3200 * 4);
    expect(sizes.ddp.optimizerBytes).toBe(2 * 3200 * 4);
    expect(sizes.ddp.masterShardBytes).toBe(0);
    expect(sizes.zero1.replicaBytes).toBe((2176 + 1024) * 2);
    expect(sizes.zero1.masterShardBytes).toBe(((2176 + 1024) / 2) * 4);
    expect(sizes.zero1.optimizerBytes).toBe(2 * ((2176 + 1024) / 2) * 4);
    // zero1 keeps the full f32 sum plus its shard; zero2 only shards (+ one for accumulation).
    expect(sizes.zero1.gradientBytes).toBe((3200 + 1600) * 4);
    expect(sizes.zero2.gradientBytes).toBe(2 * 1600 * 4);
    expect(sizes.zero2.stagingBytes).toBe(2176 * 4);
  });

  it("a non-finite loss on one rank skips the update on every rank", async () => {
    const graph = regressionGraph(false);
    const ranks = await world(WORLD);
    const fresh = initParams(graph, 3);
    const engines = await Promise.all(
      ranks.map((host) =>
        DeviceDataParallelEngine.create(
          "ptx-emu",
          graph,
          1,
          settings,
          { host, strategy: "zero2" },
          {
            params: fresh,
            m: new Map(),
            v: new Map(),
            optimizerStep: 0,
          },
        ),
      ),
    );
    keepEngines(...engines);
    const results = await Promise.all(
      engines.map((e) => {
        const b = batch(0, e.rank);
        if (e.rank === 1) ((b.get("x") as HostTensor).data as Float32Array)[3] = Number.NaN;
        return e.step([b], [1], LR, local);
      }),
    );
    for (const r of results) {
      expect(Number.isNaN(r.loss)).toBe(true);
      expect(r.applied).toBe(false);
    }
    const states = await Promise.all(engines.map((e) => e.state())); // collective
    for (const [i, e] of engines.entries()) {
      expect(e.optimizerStep).toBe(0);
      for (const [name, t] of fresh) expect(states[i].params.get(name)?.data, name).toEqual(t.data);
    }
  });
});
