// The lowered xxs plans on a real GPU (runtime/exec's PlanExecutor on a CudaDevice, arena memory by
// the plan's liveness): skipped where no CUDA driver is found (CI), run on the lent GPU machines with
// test/lower/gpu-run.sh. bf16 outputs are held to the CPU bf16 graph's own accuracy against the f32
// evaluation (the criterion of helpers.ts's checkAgainstTruth), f32 outputs to 1e-5 of each output's
// scale against runtime/cpu; the forward is also compared with the emulator's run of the same plan.
//
// NVIDIA H200 (driver 13.0), 2026-11-27: pre-training forward bf16 629 launches, 4.55 ms per run,
// worst error / bound 0.41, GPU vs emulator max diff 1.2e-2 of the scale (bf16 chains amplify the
// last-bit differences of approximate instructions); fused forward 474 launches, 5.20 ms, 0.39;
// segmentation training step bf16 1902 launches, 12.6 ms, 0.91; pre-training training step f32 1398
// launches, 13.5 ms, 0.32. All pass.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Graph } from "../../compiler/ir/index.ts";
import { type ExecutablePlan, lowerGraph } from "../../compiler/lower/index.ts";
import { fuse } from "../../compiler/passes/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import * as cuda from "../../runtime/cuda/driver.ts";
import { CudaDevice } from "../../runtime/exec/cuda-device.ts";
import { PlanExecutor } from "../../runtime/exec/executor.ts";
import { graphInputs, graphParams } from "./helpers.ts";
import { runPlan } from "./run-plan.ts";
import { xxsGraph } from "./xxs.ts";

const gpu = cuda.available();
const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe.skipIf(!gpu)("lowered xxs plans on a GPU", () => {
  let device: CudaDevice;
  beforeAll(() => {
    device = CudaDevice.open();
    console.log(`device: ${device.description}`);
  });
  afterAll(async () => {
    await device?.dispose();
  });

  async function onGpu(
    plan: ExecutablePlan,
    feeds: { inputs: Map<string, HostTensor>; params: Map<string, HostTensor> },
    seed: number,
  ) {
    const ex = await PlanExecutor.load(device, plan, { label: "xxs" });
    await ex.setParams(feeds.params);
    const out = await ex.run(feeds.inputs, { seed });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      await ex.run(feeds.inputs, { seed });
      times.push(ex.lastLaunchMs);
    }
    await ex.dispose();
    return { out, ms: Math.min(...times) };
  }

  async function checkBf16(label: string, g: Graph, o: { seed?: number; emulator?: boolean } = {}) {
    const seed = o.seed ?? 5;
    const feeds = { inputs: graphInputs(g), params: graphParams(g) };
    const { plan } = lowerGraph(g);
    const { out, ms } = await onGpu(plan, feeds, seed);
    const cpu = execute(g, feeds, { seed }).outputs;
    const truth = execute(g, feeds, { roundBf16: false, seed }).outputs;
    const emu = o.emulator ? runPlan(plan, feeds, { seed }).outputs : undefined;
    let worst = 0;
    let emuDiff = 0;
    for (const [name, t] of truth) {
      const scale = maxAbs(t.data);
      const ours = maxDiff((out.get(name) as HostTensor).data, t.data);
      const theirs = maxDiff((cpu.get(name) as HostTensor).data, t.data);
      // Near-zero gradients (a key bias under softmax, a dropped branch) are rounding noise in both.
      const ratio = ours === 0 ? 0 : ours / (2 * theirs + 2 ** -8 * scale + 1e-6);
      worst = Math.max(worst, ratio);
      if (emu)
        emuDiff = Math.max(
          emuDiff,
          maxDiff((out.get(name) as HostTensor).data, (emu.get(name) as HostTensor).data) / (scale || 1),
        );
      expect(ratio, `${label} ${name}: GPU error ${ours} vs the CPU bf16 graph's ${theirs} (scale ${scale})`).toBeLessThanOrEqual(
        1,
      );
    }
    console.log(
      `${label}: ${plan.launches.length} launches, ${ms.toFixed(2)} ms per run; worst GPU error / bound ${worst.toFixed(3)}${emu ? `; GPU vs emulator max diff / scale ${emuDiff.toExponential(2)}` : ""}`,
    );
  }

  it("pre-training forward, bf16, unfused (and vs the emulator)", () =>
    checkBf16("pretrain forward", xxsGraph("pretrain", "forward", "bf16"), { emulator: true }));
  it("pre-training forward, bf16, fused (window attention, cross-attention, FPN merge kernels)", () =>
    checkBf16("pretrain forward fused", fuse(xxsGraph("pretrain", "forward", "bf16")).graph));
  it("segmentation training step, bf16", () => checkBf16("seg training step", xxsGraph("seg", "training step", "bf16")));
  it("pre-training training step, f32: within 1e-5 of each output's scale", async () => {
    const g = xxsGraph("pretrain", "training step", "f32");
    const feeds = { inputs: graphInputs(g), params: graphParams(g) };
    const { plan } = lowerGraph(g);
    const { out, ms } = await onGpu(plan, feeds, 5);
    const want = execute(g, feeds, { seed: 5 }).outputs;
    const overall = Math.max(...[...want.values()].map((t) => maxAbs(t.data)));
    let worst = 0;
    for (const [name, t] of want) {
      const d = maxDiff((out.get(name) as HostTensor).data, t.data);
      // Gradients that vanish in exact arithmetic: noise at 1e-12; held to 1e-9 of the largest output.
      const bound = 1e-5 * maxAbs(t.data) + 1e-9 * overall;
      worst = Math.max(worst, d / bound);
      expect(d, `${name}: max |GPU - CPU| ${d}`).toBeLessThanOrEqual(bound);
    }
    console.log(
      `pretrain training step f32: ${plan.launches.length} launches, ${ms.toFixed(2)} ms per run; worst / bound ${worst.toFixed(3)}`,
    );
  });
});
