// Gradient release points (runtime/exec/memory-plan.ts, wired in runtime/train/device-parallel.ts):
// each gradient output of the gradient plan dies after the hook that consumes it (zero2 / zero3 /
// hsdp: its unit's reduce-scatter hook; ddp: its bucket's), so later launches reuse its arena
// bytes and the arena no longer holds one micro-batch's full f32 gradients. Two PTX emulator ranks
// in this process, collectives staged through CpuCollectives. The same run with releaseGradients
// false keeps every gradient to the plan's end: both must give the same bits (the hooks copy the
// gradients out before anything overwrites them; the emulator poisons the arena before each run,
// so a read of reused bytes would show), and the released arena must be smaller by about the
// gradients it no longer holds.
import { describe, expect, it } from "vitest";
import { gradName } from "../../compiler/autodiff/index.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { type HostTensor, initParams } from "../../runtime/cpu/index.ts";
import { livePeak } from "../../runtime/exec/memory-plan.ts";
import { DeviceDataParallelEngine, type DeviceStrategy } from "../../runtime/train/device-parallel.ts";
import type { OptimizerState } from "../../runtime/train/step.ts";
import { keepEngines, local, world } from "../helpers/cpu-world.ts";
import { randomTensor } from "../kernels/harness.ts";

const D = 64;
const BLOCKS = 4;

/**
 * h = x stem; h += gelu(h w_i + b_i) in blocks.0..3; loss = mean((h head - t)^2). The weights
 * (4 x 64 x 64) dwarf the activations (4 x 64), so the gradients are most of the arena. The root
 * unit holds stem (its gradient written last) and head (first): it stays live through the backward.
 */
function wideBlocks(): Graph {
  const g = new Graph();
  const x = g.add("input", [], { name: "x", shape: [4, D], dtype: "f32" });
  const t = g.add("input", [], { name: "t", shape: [4, 8], dtype: "f32" });
  const param = (name: string, shape: number[]) =>
    g.add("param", [], { name, shape, dtype: "f32", init: "normal", initArgs: [0.1] });
  let h = g.add("mul", [x.id, param("stem.scale", [D]).id], {}).id;
  for (let i = 0; i < BLOCKS; i++) {
    const s = `blocks.${i}`;
    const w = param(`${s}.fc.weight`, [D, D]);
    const b = param(`${s}.fc.bias`, [D]);
    const y = g.add(
      "gelu",
      [g.add("add", [g.add("matmul", [h, w.id], {}, undefined, s).id, b.id], {}, undefined, s).id],
      { approximate: "none" },
      undefined,
      s,
    );
    h = g.add("add", [h, y.id], {}, undefined, s).id;
  }
  const e = g.add("sub", [g.add("matmul", [h, param("head.weight", [D, 8]).id], {}).id, t.id], {});
  g.setOutput("loss", g.add("mean", [g.add("mul", [e.id, e.id], {}).id], { axes: [0, 1], keepdims: false }).id);
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

interface Run {
  losses: number[][];
  gradNorms: number[];
  state: OptimizerState;
  arenaBytes: number;
  livePeakBytes: number;
}

async function train(
  graph: Graph,
  strategy: DeviceStrategy,
  releaseGradients: boolean,
): Promise<{ runs: Run[]; engine: DeviceDataParallelEngine }> {
  const ranks = await world(2);
  const engines = await Promise.all(
    ranks.map((host) =>
      DeviceDataParallelEngine.create(
        "ptx-emu",
        graph,
        ACCUM,
        settings,
        { host, strategy, releaseGradients, bucketCapBytes: D * D * 4 },
        { params: initParams(graph, 3), m: new Map(), v: new Map(), optimizerStep: 0 },
      ),
    ),
  );
  keepEngines(...engines);
  const runs: Run[] = engines.map((e) => ({
    losses: [],
    gradNorms: [],
    state: undefined as never,
    arenaBytes: e.memory().plans.grad.arenaBytes,
    livePeakBytes: e.memory().plans.grad.livePeakBytes,
  }));
  for (let s = 0; s < STEPS; s++) {
    const results = await Promise.all(
      engines.map((e) => {
        const js = [e.rank, 2 + e.rank];
        return e.step(
          js.map((j) => batchOf(graph, s, j)),
          js.map((j) => 7 + 10 * s + j),
          1e-2,
          local,
        );
      }),
    );
    results.forEach((r, i) => {
      expect(r.applied).toBe(true);
      runs[i].losses.push([...r.losses]);
      runs[i].gradNorms.push(r.gradNorm);
    });
  }
  const states = await Promise.all(engines.map((e) => e.state()));
  states.forEach((st, i) => {
    runs[i].state = st;
  });
  return { runs, engine: engines[0] };
}

function expectSameBits(got: Run, want: Run, what: string): void {
  expect(got.losses, `${what} losses`).toEqual(want.losses);
  expect(got.gradNorms, `${what} norms`).toEqual(want.gradNorms);
  for (const part of ["params", "m", "v"] as const) {
    expect([...got.state[part].keys()].sort()).toEqual([...want.state[part].keys()].sort());
    for (const [name, t] of want.state[part]) {
      const a = got.state[part].get(name)?.data as Float32Array;
      const same = a.length === t.data.length && a.every((v, i) => Object.is(v, t.data[i]));
      expect(same, `${what} ${part} ${name}`).toBe(true);
    }
  }
}

/** Aligned f32 bytes of each gradient output of the gradient plan, by unit of the engine's layout. */
function gradientBytesByUnit(e: DeviceDataParallelEngine): number[] {
  const plan = e.gradientPlan.plan;
  const bytesOf = (name: string) => {
    const b = plan.buffers.find((x) => x.id === plan.outputs[gradName(name)]);
    return Math.ceil((b?.bytes ?? 0) / 256) * 256;
  };
  return e.layout.units.map((u) => u.params.reduce((s, p) => s + bytesOf(p.name), 0));
}

/** Most bytes of gradient outputs' storage live at one launch, from the engine's memory plan. */
function liveGradientPeak(e: DeviceDataParallelEngine): number {
  const g = e.gradientPlan;
  const roots = new Set(e.params.map((p) => g.memoryPlan.placements.get(g.plan.outputs[gradName(p.name)])?.root as number));
  return livePeak(g.memoryPlan.ranges.filter((r) => roots.has(r.root)));
}

describe("gradient release points on devices (2 emulator ranks, f32)", () => {
  for (const strategy of ["zero2", "zero3"] as const) {
    it(`${strategy}: the arena drops by the gradients it no longer holds, and training is bit-identical`, async () => {
      const graph = wideBlocks();
      const kept = await train(graph, strategy, false);
      const released = await train(graph, strategy, true);
      for (const r of [0, 1]) expectSameBits(released.runs[r], kept.runs[r], `${strategy} rank ${r}`);
      const byUnit = gradientBytesByUnit(released.engine);
      expect(released.engine.layout.units.map((u) => u.name)).toEqual(["", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]);
      const all = byUnit.reduce((a, b) => a + b, 0);
      const unit = Math.max(...byUnit.slice(1));
      // Live at any launch: at most the root unit (stem's gradient is written last) and one block.
      const held = byUnit[0] + unit;
      expect(liveGradientPeak(kept.engine)).toBe(all);
      expect(liveGradientPeak(released.engine)).toBeLessThanOrEqual(held);
      // The arena (best fit over activations and temporaries too) drops by all but about two units.
      const [k, r] = [kept.runs[0], released.runs[0]];
      const what = `${strategy} arena ${k.arenaBytes} -> ${r.arenaBytes}, live peak ${k.livePeakBytes} -> ${r.livePeakBytes}, gradients ${all}`;
      expect(k.arenaBytes - r.arenaBytes, what).toBeGreaterThanOrEqual(all - 2 * unit);
      expect(k.livePeakBytes - r.livePeakBytes, what).toBeGreaterThanOrEqual(all - 2 * unit);
    });
  }

  it("ddp: each gradient is released at its bucket's hook; the same bits, a smaller arena", async () => {
    const graph = wideBlocks();
    const kept = await train(graph, "ddp", false);
    const released = await train(graph, "ddp", true);
    for (const r of [0, 1]) expectSameBits(released.runs[r], kept.runs[r], `ddp rank ${r}`);
    expect((released.engine.buckets?.schedule.length ?? 0) > 2).toBe(true);
    expect(released.runs[0].arenaBytes).toBeLessThan(kept.runs[0].arenaBytes);
  });

  it("zero1 reads the gradients after the plan: nothing is released", async () => {
    const graph = wideBlocks();
    const { runs, engine } = await train(graph, "zero1", true);
    const all = gradientBytesByUnit(engine).reduce((a, b) => a + b, 0);
    expect(runs[0].arenaBytes).toBeGreaterThanOrEqual(all);
    const g = engine.gradientPlan;
    await expect(g.readOutput(gradName("head.weight"))).resolves.toBeDefined();
  });
});
