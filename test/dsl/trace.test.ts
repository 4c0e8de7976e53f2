import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { defineModel, F, instance, Module, nn, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import { graphStats, ShapeError } from "../../compiler/ir/index.ts";

class Wide extends Module {
  // 3 x 65536 x 65536 = 12.9e9 parameters: only shapes exist, no memory.
  readonly layers = [new nn.Linear(65536, 65536, { bias: false }), new nn.Linear(65536, 65536), new nn.Linear(65536, 65536)];
  forward(x: Tensor<[number, 65536], "f32">): Tensor<[number, 65536], "f32"> {
    let y = x;
    for (const l of this.layers) y = F.dropout(l.forward(y).gelu(), 0.1);
    return y;
  }
}

/** 1-based line of the first occurrence of `text` in this file (so tests survive reformatting). */
function lineOf(text: string): number {
  return (
    readFileSync(fileURLToPath(import.meta.url), "utf8")
      .split("\n")
      .findIndex((l) => l.includes(text)) + 1
  );
}

const wide = defineModel({
  name: "wide",
  configs: { only: {} },
  defaultConfig: "only",
  create: (_c, o) => {
    const module = new Wide();
    return instance({ module, inputs: { x: spec([o.batch, 65536]) }, forward: ({ x }) => ({ y: module.forward(x) }) });
  },
});

describe("tracing", () => {
  it("traces a 12.9e9-parameter model without allocating weights", () => {
    const before = process.memoryUsage().rss;
    const t = traceModel(wide, { batch: 2 });
    const grown = process.memoryUsage().rss - before;
    expect(graphStats(t.graph).params).toBe(3 * 65536 * 65536 + 2 * 65536);
    expect(grown).toBeLessThan(200 * 1024 * 1024); // the weights alone would be 48 GiB in f32
  });

  it("names parameters by stable dotted paths in declaration order", () => {
    const names = traceModel(wide)
      .graph.params()
      .map((p) => p.attrs.name);
    expect(names).toEqual(["layers.0.weight", "layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias"]);
  });

  it("traces dropout only in training mode, each with its own random stream", () => {
    const evalOps = graphStats(traceModel(wide).graph).ops;
    expect(evalOps.dropout).toBeUndefined();
    const train = traceModel(wide, { training: true }).graph;
    const streams = train.nodes.filter((n) => n.op === "dropout").map((n) => n.attrs.stream);
    expect(streams).toEqual([0, 1, 2]);
  });

  it("records the user's file and line on every op", () => {
    const g = traceModel(wide).graph;
    const mm = g.nodes.find((n) => n.op === "matmul");
    expect(mm?.loc?.file).toBe("test/dsl/trace.test.ts");
    expect(mm?.loc?.line).toBe(lineOf("l.forward(y).gelu()"));
    // ...and the module path that traced it
    expect(g.nodes.filter((n) => n.op === "matmul").map((n) => n.scope)).toEqual(["layers.0", "layers.1", "layers.2"]);
  });

  it("reports a trace-time shape error at the user's line", () => {
    const bad = defineModel({
      name: "bad",
      configs: { a: {} },
      defaultConfig: "a",
      create: () => {
        class M extends Module {}
        return instance({
          module: new M(),
          inputs: { x: spec([2, 3, 4]) },
          forward: ({ x }) => ({ y: x.reshape([5, 5]) }),
        });
      },
    });
    let err: unknown;
    try {
      traceModel(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as ShapeError).line).toMatch(
      /^test\/dsl\/trace\.test\.ts:(\d+):\d+: reshape: \[2,3,4\] has 24 elements but \[5,5\] has 25$/,
    );
    expect(Number((err as ShapeError).line.split(":")[1])).toBe(lineOf("x.reshape([5, 5])"));
  });

  it("slices with Python rules (negative indices, clamping, steps)", () => {
    const m = defineModel({
      name: "s",
      configs: { a: {} },
      defaultConfig: "a",
      create: () => {
        class M extends Module {}
        return instance({
          module: new M(),
          inputs: { x: spec([10, 4]) },
          forward: ({ x }) => ({ a: x.slice(0, 0, -3), d: x.slice(0, -3), b: x.slice(0, 1, 100, 3), c: x.slice(1, 0, 4, 2) }),
        });
      },
    });
    const g = traceModel(m).graph;
    const shapes = Object.fromEntries([...g.outputs].map(([k, id]) => [k, g.node(id).shape]));
    expect(shapes).toEqual({ a: [7, 4], d: [3, 4], b: [3, 4], c: [10, 2] });
  });
});
