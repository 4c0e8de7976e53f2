// Launch limits: a grid over sm_80's limits (x < 2^31, y and z <= 65535 CTAs) is an error when the
// plan is built, naming the kernel; the PTX emulator has no such limits, so without this check such a
// plan passes every emulator test and fails only on a GPU (it did: a bias-gradient reduction of the
// s config's step put 98,304 row blocks on z). The step bench/device/run.sh times must lower.

import { describe, expect, it } from "vitest";
import { traceModel } from "../../compiler/dsl/model.ts";
import { loadModel } from "../../compiler/frontend/load.ts";
import { GRID_LIMITS, launchGrid } from "../../compiler/tile/index.ts";
import { reduceColumns, reduceFused } from "../../kernels/reduce.ts";
import { trainingPlans } from "../../runtime/train/device-step.ts";
import { randomTensor, runInEmulator, zeros } from "../kernels/harness.ts";

describe("grid limits", () => {
  it("a grid over the device's limit is an error naming the kernel and the axis", () => {
    const k = reduceColumns({ dtype: "f32", op: "sum" });
    expect(launchGrid(k, { outer: 65535, len: 4, inner: 32 })).toEqual([1, 65535, 1]);
    expect(() => launchGrid(k, { outer: 65536, len: 4, inner: 32 })).toThrow(
      /kernel reduce_cols_sum_f32_f32_w4: grid y = 65536 is over the device limit 65535/,
    );
    expect(GRID_LIMITS).toEqual([2 ** 31 - 1, 65535, 65535]);
  });

  it("the fused column reduction keeps its outer index on x: 98,304 row blocks launch, sums exact", () => {
    const probe = (outer: number) =>
      reduceFused({
        name: `limits_probe_${outer}`,
        out: "f32",
        sources: ["f32"],
        op: "sum",
        outer,
        len: 49,
        inner: 96,
        chunkRows: 64,
        vec: 1,
        colThreads: 32,
        value: (at) => [
          at.read(
            0,
            at.o
              .mul(49 * 96)
              .add(at.r.mul(96))
              .add(at.col),
          ),
        ],
      });
    expect(launchGrid(probe(98304), {})).toEqual([3 * 98304, 1, 1]);
    // Small integers: every partial sum is exact in f32, so the emulator must give the same bits.
    const outer = 5;
    const x = randomTensor([outer, 49, 96], 7);
    for (let i = 0; i < x.data.length; i++) x.data[i] = Math.round(x.data[i] * 8);
    const y = runInEmulator(probe(outer), { src0: x, y: zeros([outer, 96]) }).tensors.get("y");
    for (let o = 0; o < outer; o++)
      for (let c = 0; c < 96; c++) {
        let want = 0;
        for (let r = 0; r < 49; r++) want += x.data[(o * 49 + r) * 96 + c];
        expect(y?.data[o * 96 + c]).toBe(want);
      }
  });

  it("the s config's training step (micro-batch 8, 256 px, bf16) lowers within the limits", async () => {
    const def = await loadModel("model/perceptnet.ts", { typecheck: false });
    const { graph } = traceModel(def, {
      config: "s",
      task: "pretrain",
      batch: 8,
      training: true,
      imageSize: [256, 256],
      computeDType: "bf16",
    });
    const plans = trainingPlans(graph, 2, { weightDecay: 0.05 });
    expect(plans.plans.grad.plan.launches.length).toBeGreaterThan(1000);
  }, 120_000);
});
