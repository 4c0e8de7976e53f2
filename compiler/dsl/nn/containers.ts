import * as F from "../functional.ts";
import { Module } from "../module.ts";
import type { DType, Shape } from "../shape-types.ts";
import type { Tensor } from "../tensor.ts";
import { Linear } from "./linear.ts";

// biome-ignore lint/suspicious/noExplicitAny: a layer accepts whatever tensor its forward declares
type Layer = Module & { forward(x: Tensor<any, any>): Tensor<Shape, DType> };

/** Layers applied in order; parameters are named "0.weight", "1.bias", ... as in torch.nn.Sequential. */
export class Sequential extends Module {
  readonly length: number;
  constructor(...layers: Layer[]) {
    super();
    layers.forEach((l, i) => {
      (this as unknown as Record<number, Layer>)[i] = l;
    });
    this.length = layers.length;
  }
  at(i: number): Layer {
    return (this as unknown as Record<number, Layer>)[i];
  }
  forward<D extends DType>(x: Tensor<Shape, D>): Tensor<Shape, D> {
    let y: Tensor<Shape, DType> = x;
    for (let i = 0; i < this.length; i++) y = this.at(i).forward(y);
    return y as Tensor<Shape, D>;
  }
}

export interface MLPOptions {
  /** Output features; default: the input features. */
  out?: number;
  dropout?: number;
  activation?: "gelu" | "relu";
  init?: import("../../trace/index.ts").Init;
}

/** Two-layer perceptron: fc2(drop(act(fc1(x)))), then dropout (the transformer FFN). */
export class MLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  readonly dropout: number;
  readonly activation: "gelu" | "relu";
  constructor(inFeatures: number, hidden: number, options: MLPOptions = {}) {
    super();
    const lin = options.init ? { init: options.init, biasInit: { kind: "zeros" as const } } : {};
    this.fc1 = new Linear(inFeatures, hidden, lin);
    this.fc2 = new Linear(hidden, options.out ?? inFeatures, lin);
    this.dropout = options.dropout ?? 0;
    this.activation = options.activation ?? "gelu";
  }
  forward<S extends Shape, D extends "f32" | "bf16">(x: Tensor<S, D>): Tensor<S, D> {
    const h = this.fc1.forward(x as Tensor<Shape, D>);
    const a = this.activation === "gelu" ? h.gelu() : h.relu();
    return F.dropout(this.fc2.forward(F.dropout(a, this.dropout)), this.dropout) as unknown as Tensor<S, D>;
  }
}
