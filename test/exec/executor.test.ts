// The executor on the PTX emulator, on a hand-made plan (linear-norm-plan.ts: kernels/ programs
// rendered by compiler/codegen), checked against runtime/cpu's execute of the same graph.
import { describe, expect, it } from "vitest";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { EmuDevice } from "../../runtime/exec/emu-device.ts";
import { LaunchError, PlanExecutor } from "../../runtime/exec/executor.ts";
import { placementConflicts } from "../../runtime/exec/memory-plan.ts";
import { agreement, randomTensor } from "../kernels/harness.ts";
import { cpuReference, K, linearNormPlan, M, N, normedTol, probsTol } from "./linear-norm-plan.ts";

describe("PlanExecutor on the PTX emulator", () => {
  it("runs a hand-made plan and matches runtime/cpu within bf16 tolerances", async () => {
    const plan = linearNormPlan();
    const device = new EmuDevice();
    const ex = await PlanExecutor.load(device, plan, { label: "linear-norm", poison: true });
    const w = randomTensor([K, N], 2, { scale: 0.3, bf16: false }); // f32 masters, rounded by the cast
    const x = randomTensor([M, K], 1);
    await ex.setParams(new Map([["w", w]]));
    const out = await ex.run(new Map([["x", x]]));
    const ref = cpuReference(x, w);
    for (const [name, tol] of [
      ["normed", normedTol],
      ["probs", probsTol],
    ] as const) {
      const got = out.get(name) as HostTensor;
      const want = ref.get(name) as HostTensor;
      expect(got.shape).toEqual(want.shape);
      expect(got.dtype).toBe("bf16");
      const a = agreement(got.data, want.data, tol);
      expect(a.worstRatio, `${name}: worst at ${a.worstIndex}, max abs ${a.maxAbs}`).toBeLessThanOrEqual(1);
    }
    // Most elements agree exactly: the two sides differ only where an f32 sum lands near a bf16 tie.
    const exact = (out.get("probs") as HostTensor).data.filter((v, i) => v === (ref.get("probs") as HostTensor).data[i]).length;
    expect(exact / (M * N)).toBeGreaterThan(0.9);

    // Memory: wb dies after the GEMM and x after it too; y and probs reuse their bytes.
    const m = ex.memory;
    expect(m.unsharedBytes).toBe(4 * 256 * Math.ceil((M * N * 2) / 256) + 256 * Math.ceil((K * N * 2) / 256));
    expect(m.arenaBytes).toBeLessThan(m.unsharedBytes);
    expect(m.arenaBytes).toBeGreaterThanOrEqual(m.livePeakBytes);
    expect(m.persistentBytes).toBe(256 * Math.ceil((K * N * 4) / 256) + 2 * 256);
    expect(placementConflicts(ex.memoryPlan)).toEqual([]);

    // The emulator's counters, per launch label.
    const prof = device.profile();
    expect([...prof.keys()]).toEqual(["cast %2 @ w", "matmul %3 @ linear", "layerNorm %6 @ norm", "softmax %8 @ head"]);
    const mm = prof.get("matmul %3 @ linear");
    // One 128x128 CTA of 4 warps (64x64 each: 4 x 8 m16n8k16 tiles); K=48 pads to two 32-wide k-tiles,
    // 4 k-steps of 16: 4 * 4 * 8 * 4 mma.sync (tails are zero-filled, not skipped).
    expect(mm?.mmaOps).toBe(4 * 4 * 8 * 4);
    expect(mm?.bytes.globalStore).toBe(M * N * 2);
    await ex.dispose();
  });

  it("gives identical bits with separate allocations, a replayed launch graph, and resident params", async () => {
    const plan = linearNormPlan();
    const w = randomTensor([K, N], 2, { scale: 0.3, bf16: false });
    const x1 = randomTensor([M, K], 1);
    const x2 = randomTensor([M, K], 9);
    const params = new Map([["w", w]]);
    const runWith = async (o: { memory?: "arena" | "separate"; graph?: boolean }) => {
      const ex = await PlanExecutor.load(new EmuDevice(), plan, { ...o, poison: true });
      await ex.setParams(params);
      const a = await ex.run(new Map([["x", x1]]));
      const b = await ex.run(new Map([["x", x2]])); // params stay resident; a graph replays
      await ex.dispose();
      return [a, b];
    };
    const base = await runWith({});
    for (const variant of [{ memory: "separate" as const }, { graph: true }]) {
      const got = await runWith(variant);
      for (let r = 0; r < 2; r++)
        for (const name of ["normed", "probs"])
          expect(got[r].get(name)?.data, `${JSON.stringify(variant)} run ${r} ${name}`).toEqual(base[r].get(name)?.data);
    }
    expect(base[1].get("probs")?.data).not.toEqual(base[0].get("probs")?.data);
    const ref2 = cpuReference(x2, w);
    const a = agreement(base[1].get("probs")?.data as Float32Array, ref2.get("probs")?.data as Float32Array, probsTol);
    expect(a.worstRatio).toBeLessThanOrEqual(1);
  });

  it("binds params to storage the caller owns", async () => {
    const plan = linearNormPlan();
    const device = new EmuDevice();
    const w = randomTensor([K, N], 2, { scale: 0.3, bf16: false });
    const x = randomTensor([M, K], 1);
    const store = device.alloc(K * N * 4);
    await device.upload(store, w.data);
    const ex = await PlanExecutor.load(device, plan, { bind: { params: new Map([["w", store]]) } });
    expect(ex.memory.persistentBytes).toBe(2 * 256); // only the constants
    const out = await ex.run(new Map([["x", x]]));
    const a = agreement(out.get("probs")?.data as Float32Array, cpuReference(x, w).get("probs")?.data as Float32Array, probsTol);
    expect(a.worstRatio).toBeLessThanOrEqual(1);
  });

  it("names the launch that faults, and refuses missing or mis-shaped feeds", async () => {
    const plan = linearNormPlan();
    // The softmax told it has twice the rows: it reads past the end of y (own allocations make the
    // emulator's bounds check exact).
    const bad: ExecutablePlan = {
      ...plan,
      launches: plan.launches.map((l, i) =>
        i === 3
          ? {
              ...l,
              grid: [2 * M, 1, 1] as const,
              args: l.args.map((a, j) => (j === 2 ? { kind: "i32" as const, value: 2 * M } : a)),
            }
          : l,
      ),
    };
    const ex = await PlanExecutor.load(new EmuDevice(), bad, { memory: "separate", label: "bad" });
    await ex.setParams(new Map([["w", randomTensor([K, N], 2, { bf16: false })]]));
    const err = await ex.run(new Map([["x", randomTensor([M, K], 1)]])).catch((e) => e);
    expect(err).toBeInstanceOf(LaunchError);
    expect((err as LaunchError).index).toBe(3);
    expect((err as Error).message).toMatch(
      /^bad: launch 3 of 4 failed: softmax %8 @ head \(kernel softmax_fwd_bf16_bf16_v8_w4\): .*out-of-bounds/,
    );

    const ok = await PlanExecutor.load(new EmuDevice(), plan);
    await expect(ok.run(new Map())).rejects.toThrow(/parameters not set/);
    await ok.setParams(new Map([["w", randomTensor([K, N], 2, { bf16: false })]]));
    await expect(ok.run(new Map())).rejects.toThrow(/no value for input 'x'/);
    await expect(ok.run(new Map([["x", hostTensor([K, M], "bf16")]]))).rejects.toThrow(
      /input 'x' has shape \[48,40\], the plan expects \[40,48\]/,
    );
    await expect(ok.setParams(new Map())).rejects.toThrow(/no value for parameter\(s\) w/);
  });

  it("rejects a malformed plan before allocating", async () => {
    const plan = linearNormPlan();
    const bad: ExecutablePlan = { ...plan, outputs: { ...plan.outputs, ghost: 99 } };
    await expect(PlanExecutor.load(new EmuDevice(), bad)).rejects.toThrow(/outputs 'ghost' names missing buffer 99/);
  });
});
