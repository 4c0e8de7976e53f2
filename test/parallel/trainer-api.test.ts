// The trainer-facing API with two ranks in this process: gradients the trainer computes itself
// (addGradients) give the same bits as microBatch(); a checkpoint (state) from one strategy restores
// into another; misuse is a clear error.
import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import {
  type CpuCollectives,
  createDataParallel,
  type DataParallel,
  type DataParallelStrategy,
} from "../../runtime/parallel/index.ts";
import { world } from "../helpers/cpu-world.ts";
import { graphs, initialParams, microBatch, type TrainConfig } from "./model.ts";

const c: TrainConfig = { steps: 2, micro: 2, accum: 2, world: 2, lr: 0.01, weightDecay: 0.1, maxGradNorm: 0.5 };
const { forward, gradGraph } = graphs(c.micro);

async function create(ranks: CpuCollectives[], strategy: DataParallelStrategy): Promise<DataParallel[]> {
  return Promise.all(
    ranks.map((collectives) =>
      createDataParallel({
        strategy,
        collectives,
        gradGraph,
        params: initialParams(forward),
        accumSteps: c.accum,
        weightDecay: c.weightDecay,
        maxGradNorm: c.maxGradNorm,
        bucketCapBytes: 2048,
      }),
    ),
  );
}

/** Trains every rank concurrently; `own` runs the backward in the test and hands in the gradients. */
async function train(dps: DataParallel[], own: boolean): Promise<void> {
  for (let t = 0; t < c.steps; t++) {
    await Promise.all(
      dps.map(async (dp, r) => {
        for (let k = 0; k < c.accum; k++) {
          const batch = microBatch(c, t, r, k);
          if (!own) {
            await dp.microBatch(batch);
            continue;
          }
          const { outputs } = execute(gradGraph, { inputs: batch, params: dp.currentParams() });
          await dp.addGradients(new Map([...outputs].filter(([name]) => name.startsWith("grad/"))));
        }
        await dp.step({ lr: c.lr, step: t + 1 });
      }),
    );
  }
}

const bitsOf = (m: Map<string, HostTensor>) => Object.fromEntries([...m].map(([k, t]) => [k, [...t.data]]));

describe("the trainer's view of a data-parallel strategy", () => {
  it.each(["ddp", "zero1", "zero2"] as const)(
    "%s: gradients handed in by the trainer give microBatch()'s bits",
    async (strategy) => {
      const ranks = await world(2);
      const viaMicroBatch = await create(ranks, strategy);
      await train(viaMicroBatch, false);
      const viaGrads = await create(ranks, strategy);
      await train(viaGrads, true);
      // fullParams is collective for sharded strategies: every rank at once, one instance at a time
      // (every rank must issue the same collectives in the same order).
      const a = await Promise.all(viaGrads.map((dp) => dp.fullParams()));
      const b = await Promise.all(viaMicroBatch.map((dp) => dp.fullParams()));
      for (const r of [0, 1]) expect(bitsOf(a[r])).toEqual(bitsOf(b[r]));
    },
  );

  it("a checkpoint (full weights and moments) from ZeRO-3 resumes under DDP with the same next step", async () => {
    const ranks = await world(2);
    const zero3 = await create(ranks, "zero3");
    await train(zero3, false);
    const states = await Promise.all(zero3.map((dp) => dp.state()));
    expect(bitsOf(states[0].m)).toEqual(bitsOf(states[1].m));
    const ddp = await create(ranks, "ddp");
    for (const dp of ddp) dp.loadState(states[0]);
    expect(bitsOf(await ddp[1].fullParams())).toEqual(bitsOf(states[0].params));
    const roundTrip = await ddp[0].state();
    expect(bitsOf(roundTrip.v)).toEqual(bitsOf(states[0].v));
  });

  it("rejects what a strategy cannot do", async () => {
    const ranks = await world(2);
    const zero3 = await create(ranks, "zero3");
    await expect(zero3[0].addGradients(new Map())).rejects.toThrow(UserError);
    expect(() => zero3[0].currentParams()).toThrow("zero3 keeps no full weights: use fullParams()");
    await expect(zero3[0].step({ lr: 1, step: 1 })).rejects.toThrow("zero3: step() before any micro-batch");
    await expect(
      createDataParallel({ strategy: "fsdp" as never, collectives: ranks[0], gradGraph, params: initialParams(forward) }),
    ).rejects.toThrow("unknown data-parallel strategy 'fsdp' (available: ddp, zero1, zero2, zero3, hsdp)");
    await expect(
      createDataParallel({ strategy: "hsdp", shardSize: 3, collectives: ranks[0], gradGraph, params: initialParams(forward) }),
    ).rejects.toThrow("the shard size 3 must divide the world size 2");
  });
});
