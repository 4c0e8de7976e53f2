// The optimizer graphs against torch.optim.AdamW and clip_grad_norm_ (test/golden/autodiff/adamw:
// torch in f32, 3 steps, two param groups), plus non-finite skipping, gradient scaling,
// accumulation and the one-graph training step.
//
// Tolerance: torch runs the update in f32 arithmetic, we compute each op in f64 and store f32;
// after 3 steps values differ by a few f32 ulps of the tensor's largest value (a parameter near 0
// is the difference of an O(1) value and its updates), so 2e-6 x (|element| + max |tensor|).

import path from "node:path";
import { describe, expect, it } from "vitest";
import { accumulateGrads, adamwParams, adamwUpdate, grad, trainingStep } from "../../compiler/autodiff/index.ts";
import { defineModel, instance, Module, nn, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import { execute, type HostTensor, hostTensor, initParams } from "../../runtime/cpu/index.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { repoRoot } from "../helpers/cli.ts";

const fx = readSafetensors(path.join(repoRoot, "test/golden/autodiff/adamw.safetensors"));
const T = (k: string) => {
  const t = fx.get(k);
  if (!t) throw new Error(`fixture lacks ${k}`);
  return t;
};
const scalar = (v: number) => hostTensor([], "f32", [v]);

function expectNear(actual: HostTensor, expected: HostTensor, what: string, rtol = 2e-6): void {
  expect(actual.shape, what).toEqual(expected.shape);
  const scale = Math.max(...Array.from(expected.data, Math.abs));
  for (let i = 0; i < expected.data.length; i++) {
    const err = Math.abs(actual.data[i] - expected.data[i]);
    if (err > rtol * (Math.abs(expected.data[i]) + scale))
      throw new Error(`${what}[${i}]: ${actual.data[i]} vs torch ${expected.data[i]}`);
  }
}

const PARAMS = [
  { name: "w", shape: [4, 3], decay: true },
  { name: "b", shape: [3], decay: false },
];

/** Runs `steps` AdamW updates, feeding outputs back; returns every step's outputs. */
function run(maxGradNorm: number | undefined, gradsAt: (step: number, n: string) => HostTensor, steps = 3, gradScale = 1) {
  const g = adamwUpdate(PARAMS, { weightDecay: 0.05, maxGradNorm });
  const state = new Map<string, HostTensor>();
  for (const p of PARAMS) {
    state.set(`param/${p.name}`, T(`init.${p.name}`));
    state.set(`m/${p.name}`, hostTensor(p.shape, "f32"));
    state.set(`v/${p.name}`, hostTensor(p.shape, "f32"));
  }
  const results: Map<string, HostTensor>[] = [];
  for (let s = 1; s <= steps; s++) {
    const inputs = new Map(state);
    for (const p of PARAMS) inputs.set(`grad/${p.name}`, gradsAt(s, p.name));
    inputs.set("lr", scalar(0.01)).set("step", scalar(s)).set("gradScale", scalar(gradScale));
    const out = execute(g, { inputs, params: {} }).outputs;
    for (const k of state.keys()) state.set(k, out.get(k) as HostTensor);
    results.push(out);
  }
  return results;
}

describe("adamwUpdate against torch.optim.AdamW", () => {
  for (const [mode, maxNorm] of [
    ["noclip", undefined],
    ["clip", 0.5],
  ] as const) {
    it(`3 steps, decayed and non-decayed parameters, ${mode === "clip" ? "clip_grad_norm_(0.5)" : "no clipping"}`, () => {
      const results = run(maxNorm, (s, n) => T(`grad${s}.${n}`));
      results.forEach((out, i) => {
        const s = `${mode}.step${i + 1}`;
        expect(out.get("finite")?.data[0]).toBe(1);
        expectNear(out.get("gradNorm") as HostTensor, T(`${s}.gradNorm`), `${s} gradNorm`);
        for (const p of PARAMS) {
          expectNear(out.get(`param/${p.name}`) as HostTensor, T(`${s}.${p.name}`), `${s} param ${p.name}`);
          expectNear(out.get(`m/${p.name}`) as HostTensor, T(`${s}.m.${p.name}`), `${s} m ${p.name}`);
          expectNear(out.get(`v/${p.name}`) as HostTensor, T(`${s}.v.${p.name}`), `${s} v ${p.name}`);
        }
      });
      const clip = results.map((o) => (o.get("clipScale") as HostTensor).data[0]);
      if (maxNorm) {
        expect(clip[0]).toBeLessThan(1); // steps 1-2 clip, step 3's tiny gradients do not
        expect(clip[2]).toBe(1);
      } else expect(clip).toEqual([1, 1, 1]);
    });
  }

  it("gradScale multiplies the gradients first (2x gradients at scale 1/2 == torch)", () => {
    const twice = (t: HostTensor) =>
      hostTensor(
        t.shape,
        "f32",
        Float32Array.from(t.data, (v) => 2 * v),
      );
    const results = run(0.5, (s, n) => twice(T(`grad${s}.${n}`)), 3, 0.5);
    expectNear(results[2].get("param/w") as HostTensor, T("clip.step3.w"), "param w");
  });

  it("a non-finite gradient makes the step a no-op and reports finite = 0", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const results = run(undefined, (s, n) => {
        const t = T(`grad${s}.${n}`);
        if (s !== 2 || n !== "b") return t;
        const d = Float32Array.from(t.data);
        d[1] = bad;
        return hostTensor(t.shape, "f32", d);
      });
      expect(results.map((o) => o.get("finite")?.data[0])).toEqual([1, 0, 1]);
      for (const k of ["param/w", "m/w", "v/b"]) expect(results[1].get(k)?.data).toEqual(results[0].get(k)?.data);
    }
  });
});

describe("accumulation and the one-graph training step", () => {
  it("accumulateGrads adds", () => {
    const g = accumulateGrads([{ name: "w", shape: [2] }]);
    const out = execute(g, {
      inputs: { "acc/w": hostTensor([2], "f32", [1, 2]), "grad/w": hostTensor([2], "f32", [0.5, -4]) },
      params: {},
    });
    expect(Array.from(out.outputs.get("acc/w")?.data ?? [])).toEqual([1.5, -2]);
  });

  class Net extends Module {
    readonly fc = new nn.Linear(3, 2);
    readonly norm = new nn.LayerNorm(2);
    forward(x: Tensor<[number, 3], "f32">): Tensor<[], "f32"> {
      const y = this.norm.forward(this.fc.forward(x));
      return y.mul(y).sum([0, 1]).sqrt() as Tensor<[], "f32">;
    }
  }
  const net = defineModel({
    name: "net",
    configs: { only: {} },
    defaultConfig: "only",
    create: (_c, o) => {
      const module = new Net();
      return instance({ module, inputs: { x: spec([o.batch, 3]) }, forward: ({ x }) => ({ loss: module.forward(x) }) });
    },
  });

  it("trainingStep == grad then adamwUpdate, bit for bit", () => {
    const fwd = traceModel(net, { batch: 4 }).graph;
    const x = hostTensor([4, 3], "f32", [0.3, -1, 2, 1, 0.5, -0.25, 0, 1.5, -2, 0.7, 0.1, 0.9]);
    const params = initParams(fwd, 5);
    const opt = { maxGradNorm: 0.1, weightDecay: 0.05 };
    const extra = (p: { name: string; shape: readonly number[] }[]) => {
      const m = new Map<string, HostTensor>();
      for (const q of p) {
        m.set(
          `m/${q.name}`,
          hostTensor(
            q.shape,
            "f32",
            Float32Array.from({ length: q.shape.reduce((a, b) => a * b, 1) }, (_, i) => 0.01 * i),
          ),
        );
        m.set(
          `v/${q.name}`,
          hostTensor(
            q.shape,
            "f32",
            Float32Array.from({ length: q.shape.reduce((a, b) => a * b, 1) }, (_, i) => 0.001 * i),
          ),
        );
      }
      return m.set("lr", scalar(1e-2)).set("step", scalar(7)).set("gradScale", scalar(1));
    };
    const list = adamwParams(fwd);
    expect(list.map((p) => [p.name, p.decay])).toEqual([
      ["fc.weight", true],
      ["fc.bias", false],
      ["norm.weight", false],
      ["norm.bias", false],
    ]);

    const one = execute(trainingStep(fwd, { loss: "loss", ...opt }), {
      inputs: new Map([["x", x], ...extra(list)]),
      params,
    }).outputs;

    const grads = execute(grad(fwd, { loss: "loss" }), { inputs: { x }, params }).outputs;
    const upd = new Map(extra(list));
    for (const p of list) {
      upd.set(`param/${p.name}`, params.get(p.name) as HostTensor);
      upd.set(`grad/${p.name}`, grads.get(`grad/${p.name}`) as HostTensor);
    }
    const two = execute(adamwUpdate(list, opt), { inputs: upd, params: {} }).outputs;
    expect(one.get("loss")?.data).toEqual(grads.get("loss")?.data);
    for (const k of [...two.keys()]) expect(one.get(k)?.data, k).toEqual(two.get(k)?.data);
    expect(two.get("clipScale")?.data[0]).toBeLessThan(1);
  });
});
