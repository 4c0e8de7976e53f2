// dropout and dropPath in the CPU executor. Their masks come from a counter-based hash, not torch's
// RNG, so instead of fixtures these tests check the properties torch's masks have: deterministic
// for a (seed, stream), independent across streams, seeds and positions, a keep rate of 1 - p
// within binomial bounds, kept values scaled by 1/(1-p), and whole samples for dropPath.

import { describe, expect, it } from "vitest";
import { F } from "../../compiler/dsl/index.ts";
import { tensorOf } from "../../compiler/dsl/tensor.ts";
import { Trace, withTrace } from "../../compiler/trace/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { binomialBound } from "./stats.ts";

type Op = "dropout" | "dropPath";

/** Two masks of the same op on x (streams 0 and 1), in training mode unless told otherwise. */
function run(op: Op, x: HostTensor, p: number, seed: number, training = true) {
  const trace = new Trace({ training });
  withTrace(trace, () => {
    const t = tensorOf<readonly number[], "f32">(
      trace.graph.add("input", [], { name: "x", shape: [...x.shape], dtype: "f32" }),
      trace,
    );
    trace.graph.setOutput("a", F[op](t, p).id);
    trace.graph.setOutput("b", F[op](t, p).id);
  });
  const out = execute(trace.graph, { inputs: { x }, params: {} }, { seed }).outputs;
  return { graph: trace.graph, a: (out.get("a") as HostTensor).data, b: (out.get("b") as HostTensor).data };
}

const n = 200_000;
const ones = hostTensor([n], "f32", new Float32Array(n).fill(1));
const kept = (d: ArrayLike<number>) => Array.from(d, (v) => (v !== 0 ? 1 : 0));
const count = (m: number[]) => m.reduce((s, v) => s + v, 0);
const agree = (a: number[], b: number[]) => a.reduce((s, v, i) => s + (v === b[i] ? 1 : 0), 0);
/** Elementwise equality without per-element expect() calls (fast on 200k elements). */
const same = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));

describe("dropout", () => {
  it("is deterministic for a seed and stream", () => {
    const r1 = run("dropout", ones, 0.3, 42);
    const r2 = run("dropout", ones, 0.3, 42);
    expect(same(r1.a, r2.a) && same(r1.b, r2.b)).toBe(true);
    expect(same(r1.a, r1.b)).toBe(false);
  });

  for (const p of [0.1, 0.5, 0.9]) {
    it(`keeps a fraction 1 - p of the elements (p = ${p}) and scales them by 1/(1-p)`, () => {
      const x = hostTensor(
        [n],
        "f32",
        Array.from({ length: n }, (_, i) => 1 + (i % 97) / 32),
      );
      const { a } = run("dropout", x, p, 7);
      const m = kept(a);
      expect(Math.abs(count(m) - n * (1 - p))).toBeLessThanOrEqual(binomialBound(n, 1 - p));
      let badScale = 0;
      for (let i = 0; i < n; i++) if (m[i] && !(Math.abs(a[i] - x.data[i] / (1 - p)) <= 2 ** -23 * a[i])) badScale++;
      expect(badScale).toBe(0);
    });
  }

  it("draws independent masks for different streams, seeds and neighbouring positions", () => {
    const p = 0.4;
    // Two independent masks agree where both keep or both drop: probability p^2 + (1-p)^2.
    const q = p * p + (1 - p) * (1 - p);
    const r = run("dropout", ones, p, 1);
    const other = run("dropout", ones, p, 2);
    const [a, b, c] = [kept(r.a), kept(r.b), kept(other.a)];
    expect(Math.abs(agree(a, b) - n * q)).toBeLessThanOrEqual(binomialBound(n, q));
    expect(Math.abs(agree(a, c) - n * q)).toBeLessThanOrEqual(binomialBound(n, q));
    // Neighbours: both kept with probability (1-p)^2 (pairs (2i, 2i+1) are disjoint, so independent trials).
    let both = 0;
    for (let i = 0; i + 1 < n; i += 2) both += a[i] & a[i + 1];
    expect(Math.abs(both - (n / 2) * (1 - p) ** 2)).toBeLessThanOrEqual(binomialBound(n / 2, (1 - p) ** 2));
  });

  it("is the identity outside training (no node is traced)", () => {
    const x = hostTensor([5], "f32", [1, 2, 3, 4, 5]);
    const r = run("dropout", x, 0.5, 3, false);
    expect(r.graph.nodes.some((node) => node.op === "dropout")).toBe(false);
    expect([...r.a]).toEqual([1, 2, 3, 4, 5]);
  });
});

describe("dropPath", () => {
  const samples = 20_000;
  const per = 12;
  const x = hostTensor(
    [samples, 3, 4],
    "f32",
    Array.from({ length: samples * per }, (_, i) => 0.5 + (i % 13)),
  );

  it("drops whole samples at rate p and scales kept samples by 1/(1-p)", () => {
    const p = 0.25;
    const { a, b } = run("dropPath", x, p, 11);
    for (const out of [a, b]) {
      let keptSamples = 0;
      let partial = 0;
      for (let s = 0; s < samples; s++) {
        const row = Array.from(out.subarray(s * per, (s + 1) * per));
        const src = x.data.subarray(s * per, (s + 1) * per);
        if (row.every((v) => v === 0)) continue;
        keptSamples++;
        if (!row.every((v, i) => Math.abs(v - src[i] / (1 - p)) <= 2 ** -23 * v)) partial++;
      }
      expect(partial).toBe(0);
      expect(Math.abs(keptSamples - samples * (1 - p))).toBeLessThanOrEqual(binomialBound(samples, 1 - p));
    }
    const sampleMask = (d: ArrayLike<number>) => Array.from({ length: samples }, (_, s) => (d[s * per] !== 0 ? 1 : 0));
    const q = p * p + (1 - p) * (1 - p);
    expect(Math.abs(agree(sampleMask(a), sampleMask(b)) - samples * q)).toBeLessThanOrEqual(binomialBound(samples, q));
  });

  it("is deterministic for a seed and differs across seeds", () => {
    expect(same(run("dropPath", x, 0.5, 5).a, run("dropPath", x, 0.5, 5).a)).toBe(true);
    expect(same(run("dropPath", x, 0.5, 5).a, run("dropPath", x, 0.5, 6).a)).toBe(false);
  });
});
