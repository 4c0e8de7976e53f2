// The executor on the PTX emulator, on a hand-made plan (kernels/ programs rendered by
// compiler/codegen): cast a f32 param to bf16, GEMM, LayerNorm with constant weights, softmax, and
// an output that is a view. Checked against runtime/cpu's execute of the same graph.
import { describe, expect, it } from "vitest";
import { Graph } from "../../compiler/ir/index.ts";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { elementwiseKernel } from "../../kernels/elementwise.ts";
import { gemmKernel } from "../../kernels/gemm.ts";
import { layerNormForward } from "../../kernels/layernorm.ts";
import { softmaxForward } from "../../kernels/softmax.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { EmuDevice } from "../../runtime/exec/emu-device.ts";
import { LaunchError, PlanExecutor } from "../../runtime/exec/executor.ts";
import { placementConflicts } from "../../runtime/exec/memory-plan.ts";
import { agreement, randomTensor } from "../kernels/harness.ts";
import { PlanBuilder } from "./plan-builder.ts";

// M is not a multiple of the GEMM's 128-row tile (the tails run); K and N are multiples of 8, as
// the row kernels' 16-byte vectors need.
const M = 40;
const K = 48;
const N = 48;
const EPS = 1e-5;

function constants(): { gamma: HostTensor; beta: HostTensor } {
  return { gamma: randomTensor([N], 3, { offset: 1, scale: 0.5 }), beta: randomTensor([N], 4, { scale: 0.5 }) };
}

/** x[M,K] bf16 @ cast(w[K,N] f32 -> bf16) -> layerNorm(gamma, beta) -> softmax; outputs probs and normed (a view). */
function linearNormPlan(): ExecutablePlan {
  const { gamma, beta } = constants();
  const b = new PlanBuilder();
  const x = b.buffer("input", [M, K], "bf16", { name: "x" });
  const w = b.buffer("param", [K, N], "f32", { name: "w" });
  const wb = b.buffer("temp", [K, N], "bf16");
  const h = b.buffer("temp", [M, N], "bf16");
  const g = b.buffer("const", [N], "bf16", { data: gamma.data as Float32Array });
  const be = b.buffer("const", [N], "bf16", { data: beta.data as Float32Array });
  const y = b.buffer("temp", [M, N], "bf16");
  b.view(y, [M * N], { role: "output", name: "normed" });
  const p = b.buffer("output", [M, N], "bf16", { name: "probs" });
  const cast = elementwiseKernel({
    name: "cast_f32_bf16_48x48",
    inputs: [{ dtype: "f32", shape: [K, N] }],
    out: { dtype: "bf16", shape: [K, N] },
    fn: (xs) => xs[0],
  });
  b.launch(cast, { in0: { buffer: w }, out: { buffer: wb } }, ["out"], "cast %2 @ w");
  b.launch(
    gemmKernel({ layout: "nn", out: "bf16" }),
    { a: { buffer: x }, b: { buffer: wb }, c: { buffer: h }, M, N, K, lda: K, ldb: N, ldc: N },
    ["c"],
    "matmul %3 @ linear",
  );
  b.launch(
    layerNormForward({ dtype: "bf16" }),
    { x: { buffer: h }, y: { buffer: y }, w: { buffer: g }, b: { buffer: be }, rows: M, cols: N, eps: EPS },
    ["y"],
    "layerNorm %6 @ norm",
  );
  b.launch(
    softmaxForward({ dtype: "bf16" }),
    { x: { buffer: y }, y: { buffer: p }, rows: M, cols: N },
    ["y"],
    "softmax %8 @ head",
  );
  return b.build();
}

function cpuReference(x: HostTensor, w: HostTensor): Map<string, HostTensor> {
  const { gamma, beta } = constants();
  const g = new Graph();
  const xi = g.add("input", [], { name: "x", shape: [M, K], dtype: "bf16" });
  const wi = g.add("param", [], { name: "w", shape: [K, N], dtype: "f32", init: "zeros", initArgs: [] });
  const wb = g.add("cast", [wi.id], { dtype: "bf16" });
  const h = g.add("matmul", [xi.id, wb.id], {});
  const gc = g.add("const", [], { shape: [N], dtype: "bf16", data: gamma.data });
  const bc = g.add("const", [], { shape: [N], dtype: "bf16", data: beta.data });
  const y = g.add("layerNorm", [h.id, gc.id, bc.id], { eps: EPS });
  g.setOutput("normed", g.add("reshape", [y.id], { shape: [M * N] }).id);
  g.setOutput("probs", g.add("softmax", [y.id], { axis: -1 }).id);
  return execute(g, { inputs: { x }, params: { w } }).outputs;
}

// Tolerances. h = x @ w: both sides accumulate in f32 (different order) and round once to bf16, so
// an element may land one bf16 ulp (2^-8 relative) away. LayerNorm turns a one-ulp change of h into
// ~2^-8 |h| rstd <= 2^-8 (|y| + |mean| rstd) in y, plus y's own rounding (one ulp each side): bound
// 2^-6 |y| + 2^-6 absolute (|mean| rstd < 1 for these inputs; the mean of N=48 uniform values).
// softmax of y: exp(y) moves by the same absolute 2^-6 relative, plus one ulp: 2^-5 relative.
const normedTol = (_i: number, want: number) => 2 ** -6 * Math.abs(want) + 2 ** -6;
const probsTol = (_i: number, want: number) => 2 ** -5 * Math.abs(want) + 1e-6;

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
