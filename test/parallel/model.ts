// The model, data and single-process reference of the data-parallel tests. A residual MLP: an
// embedding, three pre-norm blocks (blocks.0..2: three FSDP units) and a norm + head (the root
// unit), trained with MSE on a fixed random regression task. It has weight-decayed matrices and
// decay-excluded biases and norm weights, so AdamW's exclusions matter.
import { adamwNames, adamwParams, adamwUpdate, grad } from "../../compiler/autodiff/index.ts";
import { defineModel, F, instance, Module, nn, spec, type Tensor, traceModel } from "../../compiler/dsl/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { execute, type HostTensor, hostTensor, initParams } from "../../runtime/cpu/index.ts";

export const IN = 8;
export const WIDTH = 16;
export const OUT = 4;

class Block extends Module {
  readonly norm = new nn.LayerNorm(WIDTH);
  readonly fc1 = new nn.Linear(WIDTH, 32);
  readonly fc2 = new nn.Linear(32, WIDTH);
  forward(x: Tensor<[number, 16], "f32">): Tensor<[number, 16], "f32"> {
    return x.add(this.fc2.forward(this.fc1.forward(this.norm.forward(x)).gelu()));
  }
}

class Net extends Module {
  readonly embed = new nn.Linear(IN, WIDTH);
  readonly blocks = [new Block(), new Block(), new Block()];
  readonly norm = new nn.LayerNorm(WIDTH);
  readonly head = new nn.Linear(WIDTH, OUT);
  forward(x: Tensor<[number, 8], "f32">): Tensor<[number, 4], "f32"> {
    let h = this.embed.forward(x);
    for (const b of this.blocks) h = b.forward(h);
    return this.head.forward(this.norm.forward(h));
  }
}

const net = defineModel({
  name: "parallel-mlp",
  configs: { default: {} },
  defaultConfig: "default",
  create: (_config, options) => {
    const module = new Net();
    return instance({
      module,
      inputs: { x: spec([options.batch, IN]), y: spec([options.batch, OUT]) },
      forward: ({ x, y }) => ({ loss: F.mseLoss(module.forward(x), y).reshape([1]) }),
    });
  },
});

export interface Graphs {
  forward: Graph;
  gradGraph: Graph;
}

/** Forward and backward graphs for `batch` samples. */
export function graphs(batch: number): Graphs {
  const forward = traceModel(net, { batch, training: true }).graph;
  return { forward, gradGraph: grad(forward, { loss: "loss" }) };
}

export const initialParams = (forward: Graph) => initParams(forward, 1234);

/** mulberry32: a small deterministic generator. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Samples [first, first + count): x uniform in [-1, 1), y = tanh(x A) for a fixed A, plus noise. */
export function samples(first: number, count: number): { x: HostTensor; y: HostTensor } {
  const a = rng(99);
  const A = Array.from({ length: IN * OUT }, () => a() * 2 - 1);
  const x = new Float32Array(count * IN);
  const y = new Float32Array(count * OUT);
  for (let s = 0; s < count; s++) {
    const r = rng(1000 + first + s);
    for (let i = 0; i < IN; i++) x[s * IN + i] = r() * 2 - 1;
    for (let o = 0; o < OUT; o++) {
      let acc = 0;
      for (let i = 0; i < IN; i++) acc += x[s * IN + i] * A[i * OUT + o];
      y[s * OUT + o] = Math.tanh(acc) + 0.1 * (r() - 0.5);
    }
  }
  return { x: hostTensor([count, IN], "f32", x), y: hostTensor([count, OUT], "f32", y) };
}

export interface TrainConfig {
  steps: number;
  /** Samples per micro-batch per rank. */
  micro: number;
  accum: number;
  world: number;
  lr: number;
  weightDecay: number;
  maxGradNorm: number;
}

/** The global batch of a step is samples [step * G, (step + 1) * G) with G = world x accum x micro. */
export const globalBatch = (c: TrainConfig) => c.world * c.accum * c.micro;

/** Rank r's k-th micro-batch of a step: its contiguous share of the global batch, cut in accum pieces. */
export function microBatch(c: TrainConfig, step: number, rank: number, k: number) {
  return samples(step * globalBatch(c) + (rank * c.accum + k) * c.micro, c.micro);
}

export interface ReferenceResult {
  params: Map<string, HostTensor>;
  gradNorms: number[];
  clipScales: number[];
}

/**
 * One process, one backward over the whole global batch per step, then the single-process AdamW
 * graph (clipping inside it): what every data-parallel run must reproduce.
 */
export function referenceTraining(c: TrainConfig): ReferenceResult {
  const G = globalBatch(c);
  const { forward, gradGraph } = graphs(G);
  const params = initialParams(forward);
  const list = adamwParams(gradGraph);
  const update = adamwUpdate(list, { weightDecay: c.weightDecay, maxGradNorm: c.maxGradNorm });
  const m = new Map(list.map((p) => [p.name, hostTensor(p.shape, "f32")]));
  const v = new Map(list.map((p) => [p.name, hostTensor(p.shape, "f32")]));
  const gradNorms: number[] = [];
  const clipScales: number[] = [];
  for (let t = 0; t < c.steps; t++) {
    const { outputs: grads } = execute(gradGraph, { inputs: samples(t * G, G), params });
    const inputs = new Map<string, HostTensor>();
    for (const p of list) {
      inputs.set(adamwNames.param(p.name), params.get(p.name)!);
      inputs.set(adamwNames.grad(p.name), grads.get(`grad/${p.name}`)!);
      inputs.set(adamwNames.m(p.name), m.get(p.name)!);
      inputs.set(adamwNames.v(p.name), v.get(p.name)!);
    }
    inputs.set("lr", hostTensor([], "f32", [c.lr]));
    inputs.set("step", hostTensor([], "f32", [t + 1]));
    inputs.set("gradScale", hostTensor([], "f32", [1]));
    const { outputs } = execute(update, { inputs, params: new Map() });
    for (const p of list) {
      params.set(p.name, outputs.get(adamwNames.param(p.name))!);
      m.set(p.name, outputs.get(adamwNames.m(p.name))!);
      v.set(p.name, outputs.get(adamwNames.v(p.name))!);
    }
    gradNorms.push(outputs.get("gradNorm")!.data[0]);
    clipScales.push(outputs.get("clipScale")!.data[0]);
  }
  return { params, gradNorms, clipScales };
}
