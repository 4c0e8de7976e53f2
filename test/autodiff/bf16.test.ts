// bf16 mixed precision: a block traced with computeDType "bf16" (input cast to bf16, nn modules cast
// their f32 master parameters to bf16, the loss cast back to f32) has f32 parameter gradients that
// agree with the f32 graph's.
//
// Bound: bf16 keeps 8 significant bits, unit roundoff u = 2^-9 = 1.95e-3; the executor rounds every
// bf16 value after each op (sums and dot products accumulate in f64 and round once). A gradient here
// passes through ~12 rounded values (forward: cast, layerNorm, matmul, add, gelu, matmul, add, mul;
// backward: the mirrored ops), each adding at most u relative error to what it carries, so the
// worst element is off by about 12u ~ 2.4% of the gradient tensor's scale (errors of a dot product
// are relative to the sum of |terms|, not to a possibly cancelled result, hence the per-tensor
// scale). We allow 4% of max |g_f32| per element and 2% in relative L2 norm; the observed values are
// printed by the failure message. A broken cast rule (dropped or doubled gradient) is off by 100%.

import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { defineModel, instance, Module, nn, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import { execute, type HostTensor, hostTensor, initParams } from "../../runtime/cpu/index.ts";
import { values } from "./gradcheck.ts";

class Block extends Module {
  readonly norm = new nn.LayerNorm(16);
  readonly fc1 = new nn.Linear(16, 48);
  readonly fc2 = new nn.Linear(48, 16);
  forward<D extends "f32" | "bf16">(x: Tensor<[number, 8, 16], D>): Tensor<[number, 8, 16], D> {
    return x.add(this.fc2.forward(this.fc1.forward(this.norm.forward(x)).gelu())) as Tensor<[number, 8, 16], D>;
  }
}

const block = defineModel({
  name: "block",
  configs: { only: {} },
  defaultConfig: "only",
  create: (_c, o) => {
    const module = new Block();
    return instance({
      module,
      inputs: { x: spec([o.batch, 8, 16]), target: spec([o.batch, 8, 16]) },
      forward: ({ x, target }) => {
        const y = module.forward(x.cast(o.computeDType)).cast("f32");
        const d = y.sub(target);
        return { loss: d.mul(d).mean([0, 1, 2]) };
      },
    });
  },
});

describe("bf16 mixed precision", () => {
  it("gradients of f32 masters through a bf16 block match the f32 graph's within the bf16 bound", () => {
    const batch = 4;
    const f32 = grad(traceModel(block, { batch }).graph, { loss: "loss" });
    const bf16 = grad(traceModel(block, { batch, computeDType: "bf16" }).graph, { loss: "loss" });
    expect(bf16.nodes.filter((n) => n.op === "matmul" && n.dtype === "bf16").length).toBeGreaterThanOrEqual(6); // 2 fwd + 4 bwd
    const params = initParams(f32, 11);
    const inputs = {
      x: hostTensor([batch, 8, 16], "f32", values([batch, 8, 16], "normal", 1)),
      target: hostTensor([batch, 8, 16], "f32", values([batch, 8, 16], "normal", 2)),
    };
    const ref = execute(f32, { inputs, params }).outputs;
    const low = execute(bf16, { inputs, params }).outputs;
    const lossRef = (ref.get("loss") as HostTensor).data[0];
    expect(Math.abs((low.get("loss") as HostTensor).data[0] - lossRef)).toBeLessThan(0.02 * lossRef);
    for (const p of f32.params()) {
      const name = `grad/${p.attrs.name}`;
      const a = low.get(name) as HostTensor;
      const e = ref.get(name) as HostTensor;
      expect(a.dtype, name).toBe("f32");
      const scale = Math.max(...Array.from(e.data, Math.abs));
      let worst = 0;
      let num = 0;
      let den = 0;
      for (let i = 0; i < e.data.length; i++) {
        const d = a.data[i] - e.data[i];
        worst = Math.max(worst, Math.abs(d) / scale);
        num += d * d;
        den += e.data[i] * e.data[i];
      }
      const rel = Math.sqrt(num / den);
      expect(worst, `${name}: worst element error / max |g| (L2 relative ${rel.toExponential(2)})`).toBeLessThan(0.04);
      expect(rel, `${name}: relative L2 error`).toBeLessThan(0.02);
      expect(worst, `${name}: bf16 rounding must be visible (else the test compares f32 with f32)`).toBeGreaterThan(1e-5);
    }
  });
});
