// The grad() driver: the rule registry covers the catalogue, missing rules and bad requests are
// located user errors, gradients of several uses add up, and the training graph keeps the
// forward's interface and locations.

import { describe, expect, it } from "vitest";
import { grad, hasGradient, registerGradient } from "../../compiler/autodiff/index.ts";
import { defineModel, F, instance, Module, nn, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import { allOps, defineOp, Graph, UserError } from "../../compiler/ir/index.ts";
import { execute, type HostTensor, hostTensor, initParams, registerKernel } from "../../runtime/cpu/index.ts";
import { checkGrad } from "./gradcheck.ts";

/** Backward-only ops (compiler/ir/ops/grad.ts, and the fused ops' in fused.ts): no second-order gradients. */
const BACKWARD_OPS = [
  "conv2dBackwardInput",
  "conv2dBackwardWeight",
  "upsampleBackward",
  "takeBackward",
  "layerNormBackward",
  "groupNormBackward",
  "windowAttentionBackward",
  "crossAttentionBackward",
];

// Test-only ops: x*x with a correct and a deliberately wrong rule, and one without a rule.
for (const name of ["probeSquare", "probeSquareWrong", "probeNoRule"]) {
  defineOp({ name, inputs: 1, infer: ([x]) => x, flops: () => 0 });
  registerKernel(name, (node, [x]) =>
    hostTensor(
      node.shape,
      node.dtype,
      Float32Array.from(x.data, (v) => v * v),
    ),
  );
}
registerGradient("probeSquare", ({ b, inputs, dy }) => [b.mul(dy, b.scale(inputs[0].id, 2))]);
registerGradient("probeSquareWrong", ({ b, inputs, dy }) => [b.mul(dy, b.scale(inputs[0].id, 2.02))]);
const PROBES = ["probeSquare", "probeSquareWrong", "probeNoRule"];

class Tiny extends Module {
  readonly fc = new nn.Linear(4, 3);
  readonly unused = new nn.Linear(2, 2);
  forward(x: Tensor<[number, 4], "f32">): Tensor<[], "f32"> {
    const y = this.fc.forward(x);
    return y.mul(y).mean([0, 1]) as Tensor<[], "f32">;
  }
}
const tiny = (dtype: "f32" | "bf16") =>
  defineModel({
    name: "tiny",
    configs: { only: {} },
    defaultConfig: "only",
    create: (_c, o) => {
      const module = new Tiny();
      return instance({
        module,
        inputs: { x: spec([o.batch, 4]) },
        forward: ({ x }) => {
          const loss = module.forward(x.cast(dtype) as unknown as Tensor<[number, 4], "f32">);
          return { loss: F.dropout(loss.reshape([1]), 0).cast("f32") };
        },
      });
    },
  });

describe("grad()", () => {
  it("has a rule for every op of the catalogue except the backward-only ops", () => {
    const missing = allOps()
      .map((o) => o.name)
      .filter((n) => !hasGradient(n) && !BACKWARD_OPS.includes(n) && !PROBES.includes(n));
    expect(missing).toEqual([]);
  });

  it("the finite-difference checker catches a rule that is 1% off", () => {
    const build =
      (op: string) =>
      (g: Graph, [x]: number[]) =>
        g.add(op, [x]).id;
    expect(checkGrad([{ shape: [3, 4] }], build("probeSquare")).maxGrad).toBeGreaterThan(0);
    expect(() => checkGrad([{ shape: [3, 4] }], build("probeSquareWrong"))).toThrow(/analytic .* vs numeric/);
  });

  it("reports an op without a gradient rule as a user error at its source line", () => {
    const g = new Graph();
    const p = g.add("param", [], { name: "w", shape: [2], dtype: "f32", init: "zeros", initArgs: [] }).id;
    const q = g.add("probeNoRule", [p], {}, { file: "model/net.ts", line: 12, col: 5 }).id;
    g.setOutput("loss", g.add("sum", [q], { axes: [0], keepdims: false }).id);
    let error: unknown;
    try {
      grad(g, { loss: "loss" });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).line).toMatch(/^model\/net\.ts:12:5: no gradient rule for op 'probeNoRule'/);
  });

  it("rejects a missing or non-scalar loss and unknown parameter names", () => {
    const g = new Graph();
    const p = g.add("param", [], { name: "w", shape: [2], dtype: "f32", init: "zeros", initArgs: [] }).id;
    g.setOutput("vec", g.add("exp", [p]).id);
    expect(() => grad(g, { loss: "nope" })).toThrow(/no output 'nope'/);
    expect(() => grad(g, { loss: "vec" })).toThrow(/must be a floating-point scalar, got f32\[2\]/);
    g.setOutput("loss", g.add("sum", [p], { axes: [0], keepdims: false }).id);
    expect(() => grad(g, { loss: "loss", wrt: ["v"] })).toThrow(/no parameter named 'v'/);
  });

  it("adds the gradients of several uses and gives zeros to unused parameters", () => {
    const t = traceModel(tiny("f32"), { batch: 2, training: true });
    const tg = grad(t.graph, { loss: "loss" });
    expect([...tg.outputs.keys()]).toEqual(["loss", "grad/fc.weight", "grad/fc.bias", "grad/unused.weight", "grad/unused.bias"]);
    expect(tg.params().map((p) => p.attrs.name)).toEqual(t.graph.params().map((p) => p.attrs.name));
    const params = initParams(tg, 3);
    const x = hostTensor([2, 4], "f32", [0.5, -1, 2, 0.25, 1, 1.5, -0.5, 0]);
    const r = execute(tg, { inputs: { x }, params }).outputs;
    // d mean(y^2) / d bias_j = 2/(2*3) * sum_n y_nj, computed here from the forward by hand
    const w = params.get("fc.weight") as HostTensor;
    const bias = params.get("fc.bias") as HostTensor;
    const expected = [0, 1, 2].map((j) => {
      let s = 0;
      for (let n = 0; n < 2; n++) {
        let y = bias.data[j];
        for (let k = 0; k < 4; k++) y += x.data[n * 4 + k] * w.data[j * 4 + k];
        s += y;
      }
      return s / 3;
    });
    const got = Array.from((r.get("grad/fc.bias") as HostTensor).data);
    got.forEach((v, j) => {
      expect(v).toBeCloseTo(expected[j], 5);
    });
    expect(Array.from((r.get("grad/unused.weight") as HostTensor).data)).toEqual([0, 0, 0, 0]);
  });

  it("differentiates inputs on request and only the parameters asked for", () => {
    const t = traceModel(tiny("f32"), { batch: 2 });
    const tg = grad(t.graph, { loss: "loss", wrt: ["fc.bias"], wrtInputs: ["x"] });
    expect([...tg.outputs.keys()]).toEqual(["loss", "grad/fc.bias", "gradInput/x"]);
    expect(tg.node(tg.outputs.get("gradInput/x") as number).shape).toEqual([2, 4]);
  });

  it("gives f32 gradients to f32 parameters used through bf16 casts", () => {
    const tg = grad(traceModel(tiny("bf16"), { batch: 2, computeDType: "bf16" }).graph, { loss: "loss" });
    for (const name of ["grad/fc.weight", "grad/fc.bias"]) expect(tg.node(tg.outputs.get(name) as number).dtype).toBe("f32");
    expect(tg.nodes.some((n) => n.op === "matmul" && n.dtype === "bf16" && n.id > (tg.outputs.get("loss") as number))).toBe(true);
  });

  it("stamps backward nodes with the forward op's source location", () => {
    const tg = grad(traceModel(tiny("f32"), { batch: 2 }).graph, { loss: "loss" });
    const lossId = tg.outputs.get("loss") as number;
    const backward = tg.nodes.filter((n) => n.id > lossId && n.op === "matmul");
    expect(backward.length).toBeGreaterThan(0);
    // the Linear's matmul is traced at `this.fc.forward(x)` in this file; its adjoints say so too
    const fwd = tg.nodes.find((n) => n.op === "matmul" && n.id < lossId);
    expect(fwd?.loc?.file).toBe("test/autodiff/grad.test.ts");
    for (const n of backward) expect(n.loc).toEqual(fwd?.loc);
  });
});
