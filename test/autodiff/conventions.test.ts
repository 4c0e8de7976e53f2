// The documented conventions at non-differentiable points (compiler/autodiff/README.md), checked
// against exact expected values: ties split evenly, subgradient 0 at the singular point of abs,
// relu, sqrt, rsqrt and log, torch's pow conventions, and a finite gradient for normalize(0).

import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";

/** d sum(op(params)) / d params, exactly as the executor computes it. */
function gradsOf(
  params: Record<string, number[]>,
  build: (g: Graph, ids: Record<string, number>) => number,
): Record<string, number[]> {
  const g = new Graph();
  const ids: Record<string, number> = {};
  const feeds: Record<string, HostTensor> = {};
  for (const [name, v] of Object.entries(params)) {
    ids[name] = g.add("param", [], { name, shape: [v.length], dtype: "f32", init: "zeros", initArgs: [] }).id;
    feeds[name] = hostTensor([v.length], "f32", v);
  }
  const out = build(g, ids);
  g.setOutput("loss", g.add("sum", [out], { axes: g.node(out).shape.map((_, i) => i), keepdims: false }).id);
  const r = execute(grad(g, { loss: "loss" }), { inputs: {}, params: feeds }).outputs;
  return Object.fromEntries(Object.keys(params).map((n) => [n, Array.from((r.get(`grad/${n}`) as HostTensor).data)]));
}

describe("gradient conventions", () => {
  it("maximum and minimum split ties evenly", () => {
    const a = [1, 2, -1];
    const b = [1, 3, -2];
    expect(gradsOf({ a, b }, (g, { a, b }) => g.add("maximum", [a, b]).id)).toEqual({ a: [0.5, 0, 1], b: [0.5, 1, 0] });
    expect(gradsOf({ a, b }, (g, { a, b }) => g.add("minimum", [a, b]).id)).toEqual({ a: [0.5, 1, 0], b: [0.5, 0, 1] });
  });

  it("max reduction splits the gradient among tied maxima", () => {
    expect(gradsOf({ x: [3, 1, 3, 2] }, (g, { x }) => g.add("max", [x], { axes: [0], keepdims: false }).id).x).toEqual([
      0.5, 0, 0.5, 0,
    ]);
  });

  it("abs, relu, sqrt, rsqrt and log have gradient 0 at 0", () => {
    for (const op of ["abs", "relu", "sqrt", "rsqrt", "log"]) {
      const x = gradsOf({ x: [0, 4] }, (g, { x }) => g.add(op, [x]).id).x;
      expect(x[0], op).toBe(0);
    }
    expect(gradsOf({ x: [0, 4] }, (g, { x }) => g.add("sqrt", [x]).id).x[1]).toBeCloseTo(0.25, 7);
    expect(gradsOf({ x: [-2, 0, 2] }, (g, { x }) => g.add("abs", [x]).id).x).toEqual([-1, 0, 1]);
  });

  it("pow follows torch: d/dx = 0 where y = 0, d/dy = 0 where x = 0 and y >= 0", () => {
    const r = gradsOf({ x: [0, 0, 2], y: [0, 2, 3] }, (g, { x, y }) => g.add("pow", [x, y]).id);
    expect(r.x).toEqual([0, 0, 12]);
    expect(r.y[0]).toBe(0);
    expect(r.y[1]).toBe(0);
    expect(r.y[2]).toBeCloseTo(8 * Math.log(2), 5);
  });

  it("normalize of a zero vector (x / max(||x||, eps)) has a finite gradient", () => {
    const r = gradsOf({ x: [0, 0, 0] }, (g, { x }) => {
      const sq = g.add("sum", [g.add("mul", [x, x]).id], { axes: [0], keepdims: true }).id;
      const eps = g.add("const", [], { shape: [], dtype: "f32", data: Float32Array.of(1e-12) }).id;
      const norm = g.add("maximum", [g.add("sqrt", [sq]).id, eps]).id;
      return g.add("div", [x, norm]).id;
    });
    expect(r.x.every(Number.isFinite)).toBe(true);
  });
});
