// The elementwise generator: graph regions lowered to one kernel (elementwiseFromGraph) against the
// CPU executor running the same unfused graph, over broadcast inputs and vector widths 8, 2 and 1.

import { describe, expect, it } from "vitest";
import { Graph, type Node } from "../../compiler/ir/index.ts";
import { biasGeluResidualExample, elementwiseFromGraph } from "../../kernels/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { agreement, BF16_ULP_REL, randomTensor, runInEmulator, zeros } from "./harness.ts";

interface Built {
  g: Graph;
  region: number[];
  out: Node;
}

/** Runs the region's kernel and the CPU executor on the same inputs. */
function compare(b: Built, feeds: Record<string, HostTensor>, name: string) {
  b.g.setOutput("out", b.out.id);
  const ref = execute(b.g, { inputs: feeds, params: {} }).outputs.get("out")!;
  const lowered = elementwiseFromGraph(name, { graph: b.g, nodes: b.region, output: b.out.id });
  const args: Record<string, HostTensor> = { out: zeros(b.out.shape) };
  lowered.inputs.forEach((id, j) => {
    args[`in${j}`] = feeds[String(b.g.node(id).attrs.name)];
  });
  const run = runInEmulator(lowered.kernel, args);
  return { got: run.tensors.get("out")!.data, want: ref.data, run };
}

describe("elementwise kernels from graph regions", () => {
  it("bf16: gelu(x + bias) * scale + residual over [4,6,40] with [40] and [4,1,40] operands (vec 8)", () => {
    const g = new Graph();
    const input = (name: string, shape: number[]) => g.add("input", [], { name, shape, dtype: "bf16" });
    const x = input("x", [4, 6, 40]);
    const bias = input("bias", [40]);
    const scale = input("scale", [4, 1, 40]);
    const res = input("res", [4, 6, 40]);
    const t1 = g.add("add", [x.id, bias.id]);
    const t2 = g.add("gelu", [t1.id], { approximate: "none" });
    const t3 = g.add("mul", [t2.id, scale.id]);
    const out = g.add("add", [t3.id, res.id]);
    const feeds = {
      x: randomTensor([4, 6, 40], 1, { scale: 3 }),
      bias: randomTensor([40], 2),
      scale: randomTensor([4, 1, 40], 3),
      res: randomTensor([4, 6, 40], 4),
    };
    const { got, want, run } = compare({ g, region: [t1.id, t2.id, t3.id, out.id], out }, feeds, "ew_test_bf16");
    expect(run.ptx).toContain("ld.global.v4.b32");
    // Each of the 4 bf16-typed nodes is rounded as the unfused graph stores it. Where the f32 value
    // before a rounding differs in its last bits from the executor's f64, the two roundings may pick
    // adjacent bf16 values: at most one bf16 ulp (2^-7 relative) of that intermediate, carried to
    // the output with factor <= 1.13 |scale|. So tol = 2^-7 (|t1| 1.13 |s| + |t2 s| + |t3| + |out|).
    const n = got.length;
    const tol = (i: number, w: number) => {
      const c = i % 40;
      const s = Math.abs(feeds.scale.data[Math.floor(i / 240) * 40 + c]);
      const t1v = Math.abs(feeds.x.data[i] + feeds.bias.data[c]);
      return BF16_ULP_REL * (1.13 * t1v * s + t1v * s + t1v * s + Math.abs(w)) + 1e-30;
    };
    const a = agreement(got, want, tol);
    expect(a.worstRatio, `max |err| ${a.maxAbs}`).toBeLessThanOrEqual(1);
    let exact = 0;
    for (let i = 0; i < n; i++) if (got[i] === want[i]) exact++;
    expect(exact / n).toBeGreaterThan(0.95);
  });

  it("f32: where/compare, exp, tanh, sigmoid, maximum, pow, erf, div over [3,1,5,6] x [7,1,1] x [] (vec 2)", () => {
    const g = new Graph();
    const input = (name: string, shape: number[]) => g.add("input", [], { name, shape, dtype: "f32" });
    const a = input("a", [3, 1, 5, 6]);
    const b = input("b", [7, 1, 1]);
    const c = input("c", []);
    const nodes: Node[] = [];
    const op = (name: string, ins: Node[], attrs = {}) => {
      const n = g.add(
        name,
        ins.map((x) => x.id),
        attrs,
      );
      nodes.push(n);
      return n;
    };
    const gt = op("gt", [a, b]);
    const e = op("exp", [a]);
    const th = op("tanh", [b]);
    const prod = op("mul", [e, th]);
    const sg = op("sigmoid", [op("sub", [a, b])]);
    const w = op("where", [gt, prod, sg]);
    const mx = op("maximum", [w, c]);
    const p = op("pow", [op("add", [op("abs", [a]), c]), c]);
    const er = op("erf", [b]);
    const den = op("add", [op("mul", [er, er]), op("abs", [c])]);
    const out = op("add", [mx, op("div", [p, den])]);
    const feeds = {
      a: randomTensor([3, 1, 5, 6], 5, { scale: 2, bf16: false }),
      b: randomTensor([7, 1, 1], 6, { scale: 2, bf16: false }),
      c: { shape: [], dtype: "f32" as const, data: Float32Array.of(1.5) },
    };
    const { got, want, run } = compare({ g, region: nodes.map((n) => n.id), out }, feeds, "ew_test_f32");
    expect(out.shape).toEqual([3, 7, 5, 6]);
    expect(run.ptx).toContain("ld.global.v2.f32");
    // A dozen f32 ops, transcendentals within 1e-6 relative, pow through exp2/log2 (1e-6 relative
    // of the result for exponents of order 1): 1e-5 relative to the output plus its largest term.
    const agree = agreement(got, want, (_i, x) => 1e-5 * (Math.abs(x) + 1));
    expect(agree.worstRatio, `max |err| ${agree.maxAbs}`).toBeLessThanOrEqual(1);
  });

  it("vec 1 when the last dim is odd: relu and cast to bf16 over [5, 7] with a [5, 1] column", () => {
    const g = new Graph();
    const x = g.add("input", [], { name: "x", shape: [5, 7], dtype: "f32" });
    const col = g.add("input", [], { name: "col", shape: [5, 1], dtype: "f32" });
    const r = g.add("relu", [g.add("sub", [x.id, col.id]).id]);
    const out = g.add("cast", [r.id], { dtype: "bf16" });
    const region = [r.inputs[0], r.id, out.id];
    const feeds = { x: randomTensor([5, 7], 7, { bf16: false }), col: randomTensor([5, 1], 8, { bf16: false }) };
    const { got, want, run } = compare({ g, region, out }, feeds, "ew_test_vec1");
    expect(run.ptx).not.toContain("ld.global.v");
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  it("the catalogue's bias + GELU + residual example runs", () => {
    const k = biasGeluResidualExample(8, 64);
    const x = randomTensor([8, 64], 9);
    const b = randomTensor([64], 10);
    const r = randomTensor([8, 64], 11);
    const run = runInEmulator(k, { in0: x, in1: b, in2: r, out: zeros([8, 64]) });
    const g = new Graph();
    const inp = (name: string, shape: number[]) => g.add("input", [], { name, shape, dtype: "f32" });
    const v = g.add("add", [
      g.add("gelu", [g.add("add", [inp("x", [8, 64]).id, inp("b", [64]).id]).id], { approximate: "none" }).id,
      inp("r", [8, 64]).id,
    ]);
    g.setOutput("y", g.add("cast", [v.id], { dtype: "bf16" }).id);
    const want = execute(g, { inputs: { x, b, r }, params: {} }).outputs.get("y")!.data;
    const a = agreement(
      run.tensors.get("out")!.data,
      want,
      (i, w) => BF16_ULP_REL * Math.abs(w) + 4e-6 * (Math.abs(x.data[i]) + 2),
    );
    expect(a.worstRatio).toBeLessThanOrEqual(1);
  });
});
