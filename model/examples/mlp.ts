// A small transformer-style MLP block with a classifier: the README's example. The batch is a
// named dim and the rest are literals, so tsc proves the matmul and broadcast rules.
// test/fixtures/models/ holds broken copies that the build must reject.

import { defineModel, dim, instance, Module, type Named, nn, spec, type Tensor } from "../../compiler/dsl/index.ts";

type B = Named<"B">;

class Block extends Module {
  readonly norm = new nn.LayerNorm(64);
  readonly fc1 = new nn.Linear(64, 256);
  readonly fc2 = new nn.Linear(256, 64);

  forward(x: Tensor<[B, 16, 64], "f32">): Tensor<[B, 16, 64], "f32"> {
    const h = this.fc1.forward(this.norm.forward(x)).gelu();
    return x.add(this.fc2.forward(h));
  }
}

class Classifier extends Module {
  readonly block = new Block();
  readonly head = new nn.Linear(64, 10);

  forward(x: Tensor<[B, 16, 64], "f32">): Tensor<[B, 10], "f32"> {
    return this.head.forward(this.block.forward(x).mean(1));
  }
}

export default defineModel({
  name: "mlp",
  description: "one pre-norm MLP block and a linear classifier",
  configs: { default: {} },
  defaultConfig: "default",
  create: (_config, options) => {
    const module = new Classifier();
    return instance({
      module,
      inputs: { tokens: spec([dim("B", options.batch), 16, 64]) },
      forward: ({ tokens }) => ({ logits: module.forward(tokens) }),
    });
  },
});
