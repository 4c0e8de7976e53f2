// Training a few steps with one device engine or with the ranks of a data-parallel world, and the
// comparison of the two (the device data-parallel tests). Rank r's micro-batch k is the single
// process's micro-batch k x world + r, with its dropout seed.
import { expect } from "vitest";
import type { HostTensor } from "../../runtime/cpu/index.ts";
import { compareOutputs, formatAgreement } from "../../runtime/exec/agreement.ts";
import type { StepEngine } from "../../runtime/train/engine.ts";
import type { OptimizerState } from "../../runtime/train/step.ts";
import { local } from "../helpers/cpu-world.ts";

export interface Run {
  losses: number[][];
  gradNorms: number[];
  state: OptimizerState;
}

/** What every step feeds: global micro-batch j of step s, its dropout seed, the learning rate. */
export interface Feeds {
  readonly steps: number;
  readonly lr: number;
  batch(step: number, j: number): Map<string, HostTensor>;
  seed(step: number, j: number): number;
}

/** `engines` step together (one per rank, `accum` micro-batches each); every step must apply. */
export async function trainRanks(engines: readonly StepEngine[], accum: number, feeds: Feeds): Promise<Run[]> {
  const runs: Run[] = engines.map(() => ({ losses: [], gradNorms: [], state: undefined as never }));
  for (let s = 0; s < feeds.steps; s++) {
    const results = await Promise.all(
      engines.map((e) => {
        const js = Array.from({ length: accum }, (_, k) => k * engines.length + e.rank);
        return e.step(
          js.map((j) => feeds.batch(s, j)),
          js.map((j) => feeds.seed(s, j)),
          feeds.lr,
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
  return runs;
}

/** One engine taking all `microBatches` of each step (the reference of a world's run). */
export async function trainAlone(engine: StepEngine, microBatches: number, feeds: Feeds): Promise<Run> {
  const [run] = await trainRanks([engine], microBatches, feeds);
  return run;
}

/**
 * Both sides are f32 on the same kernels and differ only in summation order (the ranks' gradients
 * summed on the host in member order, or in two levels for hsdp, where one process sums on the
 * device in micro-batch order; a sharded norm is partial sums added): ~1e-7 relative per sum; through
 * a few Adam steps (m / sqrt(v) is scale-free) that stays ~1e-6 of each tensor's scale: bound 1e-5.
 */
export function expectSameTraining(got: Run, want: Run, what: string): void {
  for (let s = 0; s < want.losses.length; s++) {
    // Losses come back in the global micro-batch order k x world + r, the single process's order.
    expect(got.losses[s].length).toBe(want.losses[s].length);
    got.losses[s].forEach((l, j) => {
      expect(Math.abs(l - want.losses[s][j]), `${what} loss ${s}.${j}`).toBeLessThanOrEqual(1e-5 * Math.abs(want.losses[s][j]));
    });
    expect(Math.abs(got.gradNorms[s] - want.gradNorms[s]) / want.gradNorms[s], `${what} norm ${s}`).toBeLessThan(1e-5);
  }
  for (const part of ["params", "m", "v"] as const) {
    const agree = compareOutputs(got.state[part], want.state[part], { rel: 1e-5, floor: 1e-7 });
    expect(agree.failures, `${what} ${part}\n${formatAgreement(agree)}`).toEqual([]);
  }
}
