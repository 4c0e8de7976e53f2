// A model file's default export: its configs, its inputs, and how to build and run it. Tracing a
// definition gives the forward graph that every later stage consumes.

import { type Graph, type DType as IrDType, type SourceLoc, UserError } from "../ir/index.ts";
import { callerLocation, type ParamLike, Trace, withTrace } from "../trace/index.ts";
import type { Module } from "./module.ts";
import type { DType, Named, Shape } from "./shape-types.ts";
import { type AnyTensor, type Tensor, tensorOf } from "./tensor.ts";

export interface TensorSpec<S extends Shape = Shape, D extends DType = DType> {
  readonly shape: S;
  readonly dtype: D;
  /** Where the spec was written, for errors about it. */
  readonly loc?: SourceLoc;
}

/** A model input: `spec([B, 3, 224, 224])` or `spec([B, H, W], "i32")`. */
export function spec<const S extends Shape>(shape: S): TensorSpec<[...S], "f32">;
export function spec<const S extends Shape, const D extends DType>(shape: S, dtype: D): TensorSpec<[...S], D>;
export function spec(shape: Shape, dtype: DType = "f32"): TensorSpec {
  return { shape: [...shape], dtype, loc: callerLocation() };
}

/** A concrete size typed as a named dim: `dim("B", options.batch)`. */
export function dim<N extends string>(_name: N, value: number): Named<N> {
  return value as Named<N>;
}

export type InputSpecs = Record<string, TensorSpec>;
export type InputTensors<I extends InputSpecs> = { [K in keyof I]: Tensor<I[K]["shape"], I[K]["dtype"]> };

/** One built model: its module tree, its inputs and its forward function (named outputs). */
export interface ModelInstance<I extends InputSpecs = InputSpecs> {
  readonly module: Module;
  readonly inputs: I;
  forward(inputs: InputTensors<I>): Record<string, AnyTensor>;
}

/** Builds a typed instance (lets TypeScript infer the input tensors' types for forward). */
export function instance<I extends InputSpecs>(m: ModelInstance<I>): ModelInstance<I> {
  return m;
}

export interface BuildOptions {
  /** The model's task (e.g. pretrain, seg, classify) when it has several. */
  readonly task: string | undefined;
  /** Samples per step. */
  readonly batch: number;
  /** Trace a training step (dropout and drop-path active). */
  readonly training: boolean;
  /** Input image size [H, W] override, for models that take images. */
  readonly imageSize: readonly [number, number] | undefined;
  /**
   * Compute dtype: with "bf16" a model casts its inputs to bf16 and computes in bf16 (parameters
   * stay f32 masters; nn modules cast them to the input's dtype), then casts losses/outputs to f32.
   */
  readonly computeDType: "f32" | "bf16";
}

/** A tensor as plain host data: what `sampleInputs` returns. */
export interface TensorData {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly data: Float32Array | Int32Array;
}

/** Where one tensor of a foreign checkpoint goes in this model. */
export interface WeightTarget {
  /** The parameter's dotted name. */
  readonly name: string;
  /** Rows [start, end) of the source's first axis (one fused tensor split into several parameters). */
  readonly rows?: readonly [number, number];
}

/** A foreign checkpoint layout (e.g. torchvision's state_dict names) mapped onto the model's parameters. */
export interface WeightFormat {
  readonly description: string;
  /**
   * The parameters a source tensor becomes: [] for a buffer the model computes itself (ignored);
   * undefined for a name the format does not know (reported as unexpected).
   */
  map(name: string, shape: readonly number[]): readonly WeightTarget[] | undefined;
}

export interface ModelDefinition<C = unknown> {
  readonly name: string;
  readonly description?: string;
  readonly configs: Readonly<Record<string, C>>;
  readonly defaultConfig: string;
  readonly tasks?: readonly string[];
  readonly defaultTask?: string;
  /** The default task of one config, when configs differ (falls back to defaultTask). */
  defaultTaskFor?(config: C): string | undefined;
  /** Foreign weight layouts of a config, by name (`ptc run --weights-format <name>`). */
  weightFormats?(config: C): Readonly<Record<string, WeightFormat>>;
  /** Inputs for a run without --inputs (e.g. a valid mask); inputs left out are drawn at random. */
  sampleInputs?(config: C, options: BuildOptions, seed: number): Record<string, TensorData>;
  // biome-ignore lint/suspicious/noExplicitAny: each model has its own input specs
  create(config: C, options: BuildOptions): ModelInstance<any>;
}

export function defineModel<C>(definition: ModelDefinition<C>): ModelDefinition<C> {
  return definition;
}

export interface TraceModelOptions {
  config?: string;
  task?: string;
  batch?: number;
  training?: boolean;
  imageSize?: readonly [number, number];
  computeDType?: "f32" | "bf16";
}

export interface TracedModel {
  readonly graph: Graph;
  readonly name: string;
  readonly configName: string;
  readonly config: unknown;
  readonly task: string | undefined;
  readonly module: Module;
  readonly options: BuildOptions;
}

export function isModelDefinition(v: unknown): v is ModelDefinition {
  const d = v as ModelDefinition;
  return !!d && typeof d === "object" && typeof d.name === "string" && typeof d.create === "function" && !!d.configs;
}

/** Runs `create` and `forward` on symbolic inputs and records the graph. */
export function traceModel(def: ModelDefinition, opts: TraceModelOptions = {}): TracedModel {
  const configName = opts.config ?? def.defaultConfig;
  const config = def.configs[configName];
  if (config === undefined) {
    throw new UserError(`unknown config '${configName}' (available: ${Object.keys(def.configs).join(", ")})`, "--config");
  }
  const task = opts.task ?? def.defaultTaskFor?.(config) ?? def.defaultTask;
  if (opts.task !== undefined && !def.tasks?.includes(opts.task)) {
    throw new UserError(`unknown task '${opts.task}' (available: ${def.tasks?.join(", ") || "none"})`, "--task");
  }
  const options: BuildOptions = {
    task,
    batch: opts.batch ?? 1,
    training: opts.training ?? false,
    imageSize: opts.imageSize,
    computeDType: opts.computeDType ?? "f32",
  };
  if (!(Number.isInteger(options.batch) && options.batch > 0)) {
    throw new UserError(`batch must be a positive integer, got ${opts.batch}`, "--batch");
  }
  const inst = def.create(config, options);
  inst.module.attributeScopes();
  const names = new Map<ParamLike, string>();
  for (const [name, p] of inst.module.namedParameters()) names.set(p, name);
  const trace = new Trace({ training: options.training }, names);
  withTrace(trace, () => {
    for (const p of names.keys()) trace.paramNode(p);
    const inputs: Record<string, AnyTensor> = {};
    for (const [name, s] of Object.entries(inst.inputs as InputSpecs)) {
      const node = trace.graph.add("input", [], { name, shape: [...s.shape], dtype: s.dtype as IrDType }, s.loc);
      inputs[name] = tensorOf(node, trace);
    }
    const outputs = inst.forward(inputs as never);
    for (const [name, t] of Object.entries(outputs)) trace.graph.setOutput(name, t.id);
  });
  return { graph: trace.graph, name: def.name, configName, config, task, module: inst.module, options };
}
