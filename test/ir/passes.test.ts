import { describe, expect, it } from "vitest";
import { Graph, graphFromJSON, graphStats, graphToJSON, printGraph, ShapeError } from "../../compiler/ir/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";

function sample(): Graph {
  const g = new Graph();
  const x = g.add("input", [], { name: "x", shape: [2, 3], dtype: "f32" }).id;
  const c1 = g.add("const", [], { shape: [], dtype: "f32", data: Float32Array.of(2) }).id;
  const c2 = g.add("const", [], { shape: [], dtype: "f32", data: Float32Array.of(2) }).id;
  const a = g.add("mul", [x, c1]).id;
  const b = g.add("mul", [x, c2]).id; // same value as a once the constants merge
  g.add("exp", [x]); // dead
  const table = g.add("const", [], { shape: [4], dtype: "i32", data: Int32Array.of(3, 1, 4, 1) }).id;
  g.setOutput("sum", g.add("add", [a, b]).id);
  g.setOutput("table", table);
  return g;
}

describe("graph IR", () => {
  it("CSE merges equal constants and the ops over them", () => {
    const g = cse(sample());
    expect(graphStats(g).ops).toEqual({ input: 1, const: 2, mul: 1, exp: 1, add: 1 });
    const add = g.node(g.outputs.get("sum") as number);
    expect(add.inputs[0]).toBe(add.inputs[1]);
  });

  it("DCE drops what no output needs but keeps the inputs", () => {
    const g = dce(sample());
    expect(graphStats(g).ops.exp).toBeUndefined();
    expect(g.inputs().length).toBe(1);
  });

  it("round-trips through JSON, typed-array constants included", () => {
    const g = sample();
    const back = graphFromJSON(JSON.parse(JSON.stringify(graphToJSON(g))));
    expect(printGraph(back)).toBe(printGraph(g));
    const t = back.node(back.outputs.get("table") as number).attrs.data as Int32Array;
    expect([...t]).toEqual([3, 1, 4, 1]);
  });

  it("prints one line per node, jaxpr-style", () => {
    const text = printGraph(sample(), "f");
    expect(text.split("\n")[0]).toBe("f(x: f32[2,3]) {");
    expect(text).toContain("  %3 = mul %0, %1 : f32[2,3]");
    expect(text).toContain("  %6 = const <4 values> : i32[4]");
    expect(text).toContain("  return { sum: %7, table: %6 }");
  });

  it("rejects ill-typed nodes with a ShapeError", () => {
    const g = new Graph();
    const a = g.add("input", [], { name: "a", shape: [2, 3], dtype: "f32" }).id;
    const b = g.add("input", [], { name: "b", shape: [4, 5], dtype: "f32" }).id;
    expect(() => g.add("matmul", [a, b])).toThrow(ShapeError);
    expect(() => g.add("matmul", [a, b])).toThrow("matmul: inner dims differ (3 vs 4)");
    expect(() => g.add("add", [a, b])).toThrow("do not broadcast");
    const i = g.add("input", [], { name: "i", shape: [2, 3], dtype: "i32" }).id;
    expect(() => g.add("add", [a, i])).toThrow("dtypes f32 and i32 differ");
  });

  it("counts FLOPs: 2 per multiply-add for matmul and conv", () => {
    const g = new Graph();
    const a = g.add("input", [], { name: "a", shape: [4, 8, 16], dtype: "f32" }).id;
    const w = g.add("input", [], { name: "w", shape: [16, 32], dtype: "f32" }).id;
    g.add("matmul", [a, w]);
    const x = g.add("input", [], { name: "x", shape: [1, 3, 8, 8], dtype: "f32" }).id;
    const k = g.add("input", [], { name: "k", shape: [6, 3, 3, 3], dtype: "f32" }).id;
    g.add("conv2d", [x, k], { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 });
    expect(graphStats(g).flops).toBe(2 * 4 * 8 * 16 * 32 + 2 * 6 * 64 * 27);
  });
});
