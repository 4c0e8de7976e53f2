// runtime/exec on a real GPU (CudaDevice): skipped where no CUDA driver is found (CI). The same
// hand-made plan as test/exec/executor.test.ts, against runtime/cpu with the same bf16 tolerances
// and against the emulator; CUDA-graph replay giving the same bits as plain launches; resident
// parameters; event timing. Run: `npx vitest run test/gpu/exec-device.test.ts` on a GPU machine
// (or bench/device/run.sh on the lent ones).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostTensor } from "../../runtime/cpu/index.ts";
import * as cuda from "../../runtime/cuda/driver.ts";
import { CudaDevice } from "../../runtime/exec/cuda-device.ts";
import { EmuDevice } from "../../runtime/exec/emu-device.ts";
import { PlanExecutor } from "../../runtime/exec/executor.ts";
import { cpuReference, K, linearNormPlan, M, N, normedTol, probsTol } from "../exec/linear-norm-plan.ts";
import { agreement, randomTensor } from "../kernels/harness.ts";

const gpu = cuda.available();

describe.skipIf(!gpu)("PlanExecutor on CudaDevice", () => {
  let device: CudaDevice;
  const w = randomTensor([K, N], 2, { scale: 0.3, bf16: false });
  const x1 = randomTensor([M, K], 1);
  const x2 = randomTensor([M, K], 9);
  const params = new Map([["w", w]]);

  beforeAll(() => {
    device = CudaDevice.open();
    console.log(`device: ${device.description}`);
  });
  afterAll(async () => {
    await device?.dispose();
  });

  const runTwice = async (o: { graph?: boolean; memory?: "arena" | "separate" }) => {
    const ex = await PlanExecutor.load(device, linearNormPlan(), { ...o, label: "linear-norm" });
    await ex.setParams(params);
    const a = await ex.run(new Map([["x", x1]]));
    const b = await ex.run(new Map([["x", x2]]));
    const ms = ex.lastLaunchMs;
    await ex.dispose();
    return { a, b, ms };
  };

  it("matches runtime/cpu within the bf16 tolerances, twice with resident params", async () => {
    const { a, b, ms } = await runTwice({});
    for (const [out, x] of [
      [a, x1],
      [b, x2],
    ] as const) {
      const ref = cpuReference(x, w);
      for (const [name, tol] of [
        ["normed", normedTol],
        ["probs", probsTol],
      ] as const) {
        const r = agreement((out.get(name) as HostTensor).data, (ref.get(name) as HostTensor).data, tol);
        console.log(`${name}: max abs ${r.maxAbs.toExponential(2)}, worst ratio ${r.worstRatio.toFixed(3)}`);
        expect(r.worstRatio, name).toBeLessThanOrEqual(1);
      }
    }
    expect(ms).toBeGreaterThan(0);
  });

  it("agrees with the emulator within the same tolerances", async () => {
    const { a } = await runTwice({});
    const emu = await PlanExecutor.load(new EmuDevice(), linearNormPlan());
    await emu.setParams(params);
    const e = await emu.run(new Map([["x", x1]]));
    for (const [name, tol] of [
      ["normed", normedTol],
      ["probs", probsTol],
    ] as const) {
      const r = agreement((a.get(name) as HostTensor).data, (e.get(name) as HostTensor).data, tol);
      expect(r.worstRatio, name).toBeLessThanOrEqual(1);
    }
  });

  it("replays the launch sequence as a CUDA graph with identical outputs", async () => {
    const plain = await runTwice({});
    const graph = await runTwice({ graph: true });
    const separate = await runTwice({ memory: "separate" });
    for (const name of ["normed", "probs"]) {
      expect(graph.a.get(name)?.data, name).toEqual(plain.a.get(name)?.data);
      expect(graph.b.get(name)?.data, name).toEqual(plain.b.get(name)?.data);
      expect(separate.b.get(name)?.data, name).toEqual(plain.b.get(name)?.data);
    }
  });
});
