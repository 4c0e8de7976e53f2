// ZeRO-3 on devices (runtime/train/device-zero3.ts): no weights replica; each block's parameters
// are all-gathered into one of two slots right before the launches that read them, in the forward
// and again in the backward. Two PTX emulator ranks in this process, collectives staged through
// CpuCollectives (the test path; on GPUs the same hooks issue NCCL all-gathers on the communication
// stream). A gather issued before the slot's previous block was done with it would hand that
// block's launches the wrong weights: the training would not match one process.
import { describe, expect, it } from "vitest";
import { Graph } from "../../compiler/ir/index.ts";
import { type HostTensor, initParams } from "../../runtime/cpu/index.ts";
import { DeviceDataParallelEngine } from "../../runtime/train/device-parallel.ts";
import { DeviceEngine } from "../../runtime/train/device-step.ts";
import { keepEngines, world } from "../helpers/cpu-world.ts";
import { randomTensor } from "../kernels/harness.ts";
import { expectSameTraining, type Run, trainAlone, trainRanks } from "./rank-runs.ts";
import { regressionGraph } from "./regression-graph.ts";

/** h = x; h += gelu(h w_i + b_i) in blocks.0..3; loss = mean((h head - t)^2): four block units and the root. */
function fourBlocks(): Graph {
  const g = new Graph();
  const x = g.add("input", [], { name: "x", shape: [4, 8, 16], dtype: "f32" });
  const t = g.add("input", [], { name: "t", shape: [4, 8, 8], dtype: "f32" });
  const param = (name: string, shape: number[]) =>
    g.add("param", [], { name, shape, dtype: "f32", init: "normal", initArgs: [0.2] });
  let h = x.id;
  for (let i = 0; i < 4; i++) {
    const s = `blocks.${i}`;
    const w = param(`${s}.fc.weight`, [16, 16]);
    const b = param(`${s}.fc.bias`, [16]);
    const y = g.add(
      "gelu",
      [g.add("add", [g.add("matmul", [h, w.id], {}, undefined, s).id, b.id], {}, undefined, s).id],
      { approximate: "none" },
      undefined,
      s,
    );
    h = g.add("add", [h, y.id], {}, undefined, s).id;
  }
  const head = param("head.weight", [16, 8]);
  const e = g.add("sub", [g.add("matmul", [h, head.id], {}).id, t.id], {});
  g.setOutput("loss", g.add("mean", [g.add("mul", [e.id, e.id], {}).id], { axes: [0, 1, 2], keepdims: false }).id);
  return g;
}

const batchOf = (graph: Graph, step: number, j: number): Map<string, HostTensor> =>
  new Map(
    graph
      .inputs()
      .map((n, i) => [String(n.attrs.name), randomTensor(n.shape as number[], 1000 * (i + 1) + 10 * step + j, { bf16: false })]),
  );
const settings = { weightDecay: 0.05, clip: 1 };
const STEPS = 2;
const ACCUM = 2;
const feedsOf = (graph: Graph) => ({
  steps: STEPS,
  lr: 1e-2,
  batch: (s: number, j: number) => batchOf(graph, s, j),
  seed: (s: number, j: number) => 7 + 10 * s + j,
});

async function single(graph: Graph): Promise<Run> {
  const engine = await DeviceEngine.create("ptx-emu", graph, 2 * ACCUM, settings, {
    params: initParams(graph, 3),
    m: new Map(),
    v: new Map(),
    optimizerStep: 0,
  });
  const run = await trainAlone(engine, 2 * ACCUM, feedsOf(graph));
  await engine.dispose();
  return run;
}

async function zero3(graph: Graph): Promise<{ runs: Run[]; engines: DeviceDataParallelEngine[] }> {
  const ranks = await world(2);
  const engines = await Promise.all(
    ranks.map((host) =>
      DeviceDataParallelEngine.create(
        "ptx-emu",
        graph,
        ACCUM,
        settings,
        { host, strategy: "zero3" },
        {
          params: initParams(graph, 3 + host.rank),
          m: new Map(),
          v: new Map(),
          optimizerStep: 0,
        },
      ),
    ),
  );
  keepEngines(...engines);
  return { runs: await trainRanks(engines, ACCUM, feedsOf(graph)), engines };
}

describe("zero3 on devices: blocks gathered per use into two slots", () => {
  it("four blocks in two slots: blocks.1 is gathered again for the backward, and training matches one process", async () => {
    const graph = fourBlocks();
    const want = await single(graph);
    const { runs, engines } = await zero3(graph);
    for (const r of runs) expectSameTraining(r, want, "zero3");
    const e = engines[0];
    expect(e.description).toMatch(/2 ranks \(zero3, blocks gathered in f32; collectives staged/);
    const units = e.layout.units.map((u) => u.name);
    expect(units).toEqual(["blocks.0", "blocks.1", "blocks.2", "blocks.3", ""]);
    const res = e.gatherResidencies ?? [];
    // Forward: blocks.0 (slot 0), blocks.1 (slot 1), blocks.2 and blocks.3 evict them; the backward
    // reads blocks.3 and blocks.2 where they are, then blocks.1 is gathered again over blocks.3.
    // blocks.0's weights are not read in the backward (x needs no gradient; dW = h^T dy).
    expect(res.map((r) => [units[r.unit], r.slot])).toEqual([
      ["blocks.0", 0],
      ["blocks.1", 1],
      ["blocks.2", 0],
      ["blocks.3", 1],
      ["blocks.1", 1],
    ]);
    const last = e.gradientPlan.plan.launches.length - 1;
    for (const [i, r] of res.entries()) {
      expect(r.issueAfter, `residency ${i}`).toBeLessThan(r.first);
      // Issued right after the slot's previous occupant's last read, never before it.
      const prev = res
        .slice(0, i)
        .filter((q) => q.slot === r.slot)
        .at(-1);
      expect(r.issueAfter).toBe(prev ? prev.last : -1);
    }
    expect(res[4].last).toBeLessThan(last);
    expect(res[3].last).toBeLessThan(res[4].first);
    // No replica: two slots of one block each (256 + 64 aligned elements, padded to 2 x 64: 384) and
    // the root's 128, in f32.
    expect(e.memory().replicaBytes).toBe((384 + 384 + 128) * 4);
  });

  it("bf16 compute: the master shards are cast and gathered as bf16, the same training as one process", async () => {
    const graph = regressionGraph(true);
    const want = await single(graph);
    const { runs, engines } = await zero3(graph);
    expect(engines[0].replicaDtype).toBe("bf16");
    for (const r of runs) expectSameTraining(r, want, "zero3 bf16");
  });
});
