// Packs (compiler/lower/pack.ts, packing.ts, optimizer.ts, training.ts) on the PTX emulator:
//   - the packed AdamW step (three launches over flat buffers) against runtime/cpu's evaluation of
//     compiler/autodiff's adamwUpdate graph on the same tensors: clipping active, decay on some
//     tensors, sizes of 1 element to several chunks, odd sizes (ragged vectors); a non-finite
//     gradient leaves everything as it was; no decay and no clipping. Tolerance: helpers.ts's f32
//     bound per element (the kernels run the graph's ops in the graph's order; only the global
//     norm's summation order differs).
//   - a bf16 training step lowered with packed parameters and gradients gives the same bits as the
//     unpacked plan (the casts are the same conversions, only batched), in two cast launches.

import { describe, expect, it } from "vitest";
import { adamwNames, adamwParams, adamwUpdate, grad, gradName } from "../../compiler/autodiff/index.ts";
import { Graph, type Node, numel } from "../../compiler/ir/index.ts";
import {
  lowerGraph,
  lowerPackedAdamW,
  lowerTrainingStep,
  PACKED_GRADS,
  packedAdamwNames,
  packLayout,
} from "../../compiler/lower/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { graphInputs, graphParams, TOLERANCE } from "./helpers.ts";
import { runPlan } from "./run-plan.ts";

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    if (Object.is(got[i], want[i])) continue; // equal, infinities included
    const bound = TOLERANCE.f32(want[i], scale);
    if (!(Math.abs(got[i] - want[i]) <= bound))
      throw new Error(`${what}[${i}]: emulator ${got[i]}, cpu ${want[i]} (bound ${bound})`);
  }
}

describe("packed AdamW vs runtime/cpu's adamwUpdate graph", () => {
  const params = [
    { name: "a.weight", shape: [37, 45], decay: true },
    { name: "a.bias", shape: [45], decay: false },
    { name: "scalar", shape: [1], decay: false },
    { name: "big.weight", shape: [150, 230], decay: true }, // 34,500 elements: three chunks
    { name: "odd", shape: [3, 5, 7], decay: true },
  ];
  const layout = packLayout(params);
  const feedsFor = (gradScale: number, poison = false) => {
    const g = adamwUpdate(params);
    const feeds = graphInputs(g);
    for (const [name, t] of feeds)
      if (name.startsWith("v/")) for (let i = 0; i < t.data.length; i++) t.data[i] = Math.abs(t.data[i]);
    if (poison) (feeds.get(adamwNames.grad("odd")) as HostTensor).data[17] = Number.POSITIVE_INFINITY;
    feeds.set(adamwNames.lr, hostTensor([], "f32", [1e-3]));
    feeds.set(adamwNames.step, hostTensor([], "f32", [3]));
    feeds.set(adamwNames.gradScale, hostTensor([], "f32", [gradScale]));
    return feeds;
  };
  const flat = (feeds: Map<string, HostTensor>, key: (n: string) => string) => {
    // Padding poisoned: the kernels must never read it as data.
    const data = new Float32Array(layout.elements).fill(Number.NaN);
    for (const m of layout.members) data.set((feeds.get(key(m.name)) as HostTensor).data, m.offset);
    return hostTensor([layout.elements], "f32", data);
  };
  const run = (options: { weightDecay: number; maxGradNorm?: number }, feeds: Map<string, HostTensor>) => {
    const c = { beta1: 0.9, beta2: 0.999, eps: 1e-8, ...options };
    const decay = new Map(params.map((p) => [p.name, p.decay]));
    const plan = lowerPackedAdamW(layout, (name) => decay.get(name) === true, c).plan;
    expect(plan.launches.length).toBe(3);
    const n = packedAdamwNames;
    const got = runPlan(plan, {
      inputs: {
        [n.params]: flat(feeds, adamwNames.param),
        [n.grads]: flat(feeds, adamwNames.grad),
        [n.m]: flat(feeds, adamwNames.m),
        [n.v]: flat(feeds, adamwNames.v),
        [n.lr]: feeds.get(adamwNames.lr) as HostTensor,
        [n.step]: feeds.get(adamwNames.step) as HostTensor,
        [n.gradScale]: feeds.get(adamwNames.gradScale) as HostTensor,
      },
    }).outputs;
    const want = execute(adamwUpdate(params, options), { inputs: feeds, params: new Map() }).outputs;
    return { got, want };
  };
  const compare = (got: Map<string, HostTensor>, want: Map<string, HostTensor>) => {
    for (const s of [adamwNames.gradNorm, adamwNames.clipScale, adamwNames.finite])
      expectClose((got.get(s) as HostTensor).data, (want.get(s) as HostTensor).data, s);
    for (const m of layout.members) {
      for (const [packed, key] of [
        [packedAdamwNames.params, adamwNames.param],
        [packedAdamwNames.m, adamwNames.m],
        [packedAdamwNames.v, adamwNames.v],
      ] as const) {
        const all = (got.get(packed) as HostTensor).data;
        expectClose(all.subarray(m.offset, m.offset + m.size), (want.get(key(m.name)) as HostTensor).data, `${key(m.name)}`);
      }
    }
  };

  it("clipping active, decay on the weights, 1 to 34,500 elements", () => {
    const { got, want } = run({ weightDecay: 0.05, maxGradNorm: 1 }, feedsFor(0.5));
    expect((want.get(adamwNames.clipScale) as HostTensor).data[0]).toBeLessThan(1); // the clip applies
    compare(got, want);
  });

  it("a non-finite gradient: finite 0 and every output equal to its input", () => {
    const feeds = feedsFor(1, true);
    const { got, want } = run({ weightDecay: 0.05, maxGradNorm: 1 }, feeds);
    expect((got.get(adamwNames.finite) as HostTensor).data[0]).toBe(0);
    compare(got, want);
    const p = (got.get(packedAdamwNames.params) as HostTensor).data;
    for (const m of layout.members)
      expect(Array.from(p.subarray(m.offset, m.offset + m.size))).toEqual(
        Array.from((feeds.get(adamwNames.param(m.name)) as HostTensor).data),
      );
  });

  it("no decay, no clipping", () => {
    const { got, want } = run({ weightDecay: 0 }, feedsFor(1));
    expect((got.get(adamwNames.clipScale) as HostTensor).data[0]).toBe(1);
    compare(got, want);
  });
});

/** A bf16 MLP with LayerNorm on f32 masters: x -> linear -> GELU -> LayerNorm -> linear -> mean square. */
function mlpTrainingGraph(): Graph {
  const g = new Graph();
  const add = (op: string, inputs: Node[], attrs: Record<string, unknown> = {}) =>
    g.add(
      op,
      inputs.map((n) => n.id),
      attrs as never,
    );
  const param = (name: string, shape: number[]) =>
    add("cast", [g.add("param", [], { name, shape, dtype: "f32", init: "zeros", initArgs: [] })], { dtype: "bf16" });
  const x = add("cast", [g.add("input", [], { name: "x", shape: [2, 40, 32], dtype: "f32" })], { dtype: "bf16" });
  const h = add("gelu", [add("add", [add("matmul", [x, param("fc1.weight", [32, 48])]), param("fc1.bias", [48])])], {
    approximate: "none",
  });
  const n = add("layerNorm", [h, param("norm.weight", [48]), param("norm.bias", [48])], { eps: 1e-5 });
  const y = add("add", [add("matmul", [n, param("fc2.weight", [48, 16])]), param("fc2.bias", [16])]);
  const sq = add("cast", [add("mul", [y, y])], { dtype: "f32" });
  g.setOutput("loss", add("mean", [sq], { axes: [0, 1, 2], keepdims: false }).id);
  return grad(g, { loss: "loss" });
}

describe("packed parameters and gradients in a bf16 training step", () => {
  it("the same bits as the unpacked plan, with one cast launch each way", () => {
    const g = mlpTrainingGraph();
    const params = adamwParams(g);
    const step = lowerTrainingStep(g, params, {
      gradName,
      accum: 2,
      adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 },
    });
    const packed = step.grad.plan;
    const plain = lowerGraph(g).plan;
    const feeds = { inputs: graphInputs(g), params: graphParams(g) };
    const a = runPlan(plain, feeds).outputs;
    const b = runPlan(packed, feeds).outputs;
    for (const [name, t] of a) expect(Array.from((b.get(name) as HostTensor).data), name).toEqual(Array.from(t.data));
    // Every gradient also sits at its parameter's offset of the "$grads" pack.
    const all = (b.get(PACKED_GRADS) as HostTensor).data;
    for (const m of step.layout.members)
      expect(Array.from(all.subarray(m.offset, m.offset + m.size)), m.name).toEqual(
        Array.from((a.get(gradName(m.name)) as HostTensor).data),
      );
    const casts = packed.launches.filter((l) => l.kernel.startsWith("packed_cast"));
    expect(casts.map((l) => l.kernel).sort()).toEqual(["packed_cast_bf16_f32", "packed_cast_f32_bf16"]);
    expect(packed.launches.length).toBeLessThan(plain.launches.length - 2 * params.length + 3);
    expect(Object.keys(packed.packs ?? {}).sort()).toEqual(["$grads", "$params"]);
    expect(numel([step.layout.elements])).toBeGreaterThanOrEqual(params.reduce((s, p) => s + numel(p.shape), 0));
    expect(step.accumulate?.plan.launches.length).toBe(1);
  });
});
