// Gradients of whole blocks against PyTorch autograd (test/golden/autodiff/gen_grads.py): the same
// blocks written in the DSL, traced, differentiated by grad() and run on the CPU executor with
// torch's inputs and weights.
//
// Tolerance: torch computed in f64 from f32 inputs; we compute each op in f64 but store every
// intermediate in f32 (relative rounding 6e-8 per stored value). Through ~20 ops of depth the
// accumulated error stays within ~1e-6 of each tensor's scale, so we allow 1e-5 relative to the
// largest gradient of the tensor plus 1e-4 of the element itself (f32 ~1e-5 relative; a wrong rule
// is off by O(1)).

import path from "node:path";
import { describe, expect, it } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { defineModel, F, instance, Module, nn, Parameter, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { repoRoot } from "../helpers/cli.ts";

const fixtures = path.join(repoRoot, "test/golden/autodiff");

/** max |a - e| / max |e| over a tensor, after an element-wise tolerance check. */
function expectGradClose(actual: HostTensor, expected: HostTensor, what: string): number {
  expect(actual.shape, what).toEqual(expected.shape);
  const scale = Math.max(...Array.from(expected.data, Math.abs));
  let worst = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const err = Math.abs(actual.data[i] - expected.data[i]);
    worst = Math.max(worst, err / scale);
    if (err > 1e-5 * scale + 1e-4 * Math.abs(expected.data[i])) {
      throw new Error(`${what}[${i}]: got ${actual.data[i]}, torch ${expected.data[i]} (scale ${scale})`);
    }
  }
  return worst;
}

/** Runs grad() of `def`'s loss on the fixture and compares loss, parameter and input gradients. */
function checkAgainstTorch(file: string, def: Parameters<typeof traceModel>[0], batch: number, inputNames: string[]): number {
  const fx = readSafetensors(path.join(fixtures, file));
  const t = traceModel(def, { batch });
  const tg = grad(t.graph, { loss: "loss", wrtInputs: ["x"] });
  const inputs = Object.fromEntries(inputNames.map((n) => [n, fx.get(`input.${n}`) as HostTensor]));
  const params = new Map(tg.params().map((p) => [String(p.attrs.name), fx.get(`param.${p.attrs.name}`) as HostTensor]));
  for (const [n, v] of params) expect(v, `fixture has param.${n}`).toBeDefined();
  const out = execute(tg, { inputs, params }).outputs;
  const loss = (out.get("loss") as HostTensor).data[0];
  const torchLoss = (fx.get("loss") as HostTensor).data[0];
  expect(Math.abs(loss - torchLoss)).toBeLessThan(1e-5 * Math.max(1, Math.abs(torchLoss)));
  let worst = 0;
  for (const name of params.keys()) {
    worst = Math.max(worst, expectGradClose(out.get(`grad/${name}`) as HostTensor, fx.get(`grad.${name}`) as HostTensor, name));
  }
  worst = Math.max(worst, expectGradClose(out.get("gradInput/x") as HostTensor, fx.get("gradInput.x") as HostTensor, "input x"));
  return worst;
}

class MlpClassifier extends Module {
  readonly norm = new nn.LayerNorm(10);
  readonly fc1 = new nn.Linear(10, 16);
  readonly fc2 = new nn.Linear(16, 10);
  readonly head = new nn.Linear(10, 5);
  forward(x: Tensor<[number, 10], "f32">): Tensor<[number, 5], "f32"> {
    const h = x.add(this.fc2.forward(this.fc1.forward(this.norm.forward(x)).gelu()));
    return this.head.forward(h);
  }
}

const mlpCe = defineModel({
  name: "mlp_ce",
  configs: { only: {} },
  defaultConfig: "only",
  create: (_c, o) => {
    const module = new MlpClassifier();
    return instance({
      module,
      inputs: { x: spec([o.batch, 10]), target: spec([o.batch], "i32") },
      forward: ({ x, target }) => ({ loss: F.crossEntropy(module.forward(x), target) }),
    });
  },
});

/** The relative-position index of a wh x ww window (Swin's), computed here independently of torch. */
function relativePositionIndex(wh: number, ww: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < wh * ww; i++)
    for (let j = 0; j < wh * ww; j++) {
      const dy = Math.floor(i / ww) - Math.floor(j / ww) + wh - 1;
      const dx = (i % ww) - (j % ww) + ww - 1;
      out.push(dy * (2 * ww - 1) + dx);
    }
  return out;
}

class WindowAttention extends Module {
  readonly norm = new nn.LayerNorm(8);
  readonly qkv = new nn.Linear(8, 24);
  readonly proj = new nn.Linear(8, 8);
  readonly relative_position_bias_table = new Parameter([15, 2]);
  forward(x: Tensor<[number, 6, 8], "f32">): Tensor<[number, 6, 8], "f32"> {
    const [b, n, c, heads] = [x.shape[0], 6, 8, 2];
    const hd = c / heads;
    const qkv = this.qkv.forward(this.norm.forward(x)).reshape([b, n, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
    const q = qkv.slice(0, 0, 1).squeeze(0);
    const k = qkv.slice(0, 1, 2).squeeze(0);
    const v = qkv.slice(0, 2, 3).squeeze(0);
    const index = F.constant(relativePositionIndex(2, 3), [n * n], "i32");
    const bias = this.relative_position_bias_table.take(index, 0).reshape([n, n, heads]).permute([2, 0, 1]);
    const attn = q
      .mul(hd ** -0.5)
      .matmul(k.mT)
      .add(bias.unsqueeze(0))
      .softmax(-1);
    const out = attn.matmul(v).transpose(1, 2).reshape([b, n, c]);
    return this.proj.forward(out) as Tensor<[number, 6, 8], "f32">;
  }
}

const attention = defineModel({
  name: "attention",
  configs: { only: {} },
  defaultConfig: "only",
  create: (_c, o) => {
    const module = new WindowAttention();
    return instance({
      module,
      inputs: { x: spec([o.batch, 6, 8]), R: spec([o.batch, 6, 8]) },
      forward: ({ x, R }) => ({ loss: module.forward(x).mul(R).sum([0, 1, 2]) }),
    });
  },
});

describe("block gradients against PyTorch autograd", () => {
  it("MLP block + cross-entropy (with an ignored target): loss, every parameter and the input", () => {
    const worst = checkAgainstTorch("mlp_ce.safetensors", mlpCe, 6, ["x", "target"]);
    expect(worst).toBeLessThan(1e-5);
  });

  it("attention block with a gathered relative-position bias: loss, every parameter and the input", () => {
    const fx = readSafetensors(path.join(fixtures, "attention.safetensors"));
    expect(Array.from((fx.get("input.index") as HostTensor).data)).toEqual(relativePositionIndex(2, 3));
    const worst = checkAgainstTorch("attention.safetensors", attention, 2, ["x", "R"]);
    expect(worst).toBeLessThan(1e-5);
  });
});
