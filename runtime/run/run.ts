// `ptc run` as a function: load the model, trace it at the requested (or the inputs file's) sizes,
// gather parameters (a checkpoint, possibly in a foreign format, or the seeded initialisation) and
// inputs, execute on a backend, and return / write the named outputs.

import { totalmem } from "node:os";
import type { ModelDefinition, TracedModel } from "../../compiler/dsl/model.ts";
import { traceModel } from "../../compiler/dsl/model.ts";
import { formatBytes } from "../../compiler/frontend/format.ts";
import { loadModel } from "../../compiler/frontend/load.ts";
import { type Graph, numel, UserError } from "../../compiler/ir/index.ts";
import { cse, dce, fuse } from "../../compiler/passes/index.ts";
import { type HostTensor, initParams } from "../cpu/index.ts";
import { readSafetensors, readSafetensorsIndex, writeSafetensors } from "../io/index.ts";
import { getBackend } from "./backend.ts";
import { impliedSizes, runInputs } from "./inputs.ts";
import { loadWeights } from "./weights.ts";

export interface RunOptions {
  config?: string;
  task?: string;
  batch?: number;
  imageSize?: readonly [number, number];
  weights?: string;
  weightsFormat?: string;
  inputs?: string;
  seed?: number;
  out?: string;
  backend?: string;
  typecheck?: boolean;
  /** Compute dtype of the traced model (bf16: the model casts its f32 parameters); default f32. */
  precision?: "f32" | "bf16";
  /** Run the pattern fusions (window attention, FPN merge, cross-attention), as `ptc build`; default true. */
  fuse?: boolean;
}

export interface RunResult {
  traced: TracedModel;
  graph: Graph;
  outputs: Map<string, HostTensor>;
  timings: Record<string, number>;
}

function trace(def: ModelDefinition, o: RunOptions, batch?: number, imageSize?: readonly [number, number]): TracedModel {
  return traceModel(def, { config: o.config, task: o.task, batch, imageSize, computeDType: o.precision ?? "f32" });
}

export async function run(file: string, o: RunOptions = {}): Promise<RunResult> {
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const lap = (stage: string) => {
    const t = performance.now();
    timings[stage] = (t - t0) / 1000;
    t0 = t;
  };
  const backend = getBackend(o.backend ?? "cpu");
  if (o.weightsFormat && !o.weights) throw new UserError("--weights-format needs --weights", "--weights-format");
  const seed = o.seed ?? 0;
  const def = await loadModel(file, { typecheck: o.typecheck });
  lap("load");

  let traced = trace(def, o, o.batch, o.imageSize);
  // An inputs file decides the sizes the flags leave open.
  const fileShapes = o.inputs ? new Map([...readSafetensorsIndex(o.inputs).entries].map(([k, e]) => [k, e.shape])) : undefined;
  if (fileShapes) {
    const implied = impliedSizes(traced.graph, fileShapes);
    const batch = o.batch ?? implied.batch;
    const imageSize = o.imageSize ?? implied.imageSize;
    if (batch !== traced.options.batch || (imageSize && imageSize.join() !== traced.options.imageSize?.join())) {
      traced = trace(def, o, batch, imageSize);
    }
  }
  const optimized = dce(cse(traced.graph));
  const graph = o.fuse === false ? optimized : fuse(optimized).graph;
  lap("trace");
  // Parameters are materialised on the host (initialised or read) whatever the backend.
  const paramBytes = graph.params().reduce((n, p) => n + 4 * numel(p.shape), 0);
  if (paramBytes > 0.75 * totalmem()) {
    throw new UserError(
      `the parameters need ${formatBytes(paramBytes)} of host memory, more than this machine can spare (${formatBytes(totalmem())})`,
      "--config",
    );
  }

  let params: Map<string, HostTensor>;
  if (o.weights) {
    const formats = def.weightFormats?.(traced.config) ?? {};
    const format = o.weightsFormat === undefined ? undefined : formats[o.weightsFormat];
    if (o.weightsFormat !== undefined && !format) {
      const known = Object.keys(formats);
      throw new UserError(
        `model '${def.name}' has no weight format '${o.weightsFormat}' (it has: ${known.length ? known.join(", ") : "none"})`,
        "--weights-format",
      );
    }
    params = loadWeights(graph, readSafetensors(o.weights), o.weights, format);
  } else {
    params = initParams(graph, seed);
  }
  const samples = o.inputs ? {} : (def.sampleInputs?.(traced.config, traced.options, seed) ?? {});
  const inputs = runInputs(graph, seed, o.inputs ? readSafetensors(o.inputs) : undefined, o.inputs, samples);
  lap("prepare");

  const outputs = await backend.execute(graph, { inputs, params }, { seed });
  lap("execute");
  if (o.out) {
    writeSafetensors(o.out, outputs, {
      model: traced.name,
      config: traced.configName,
      task: traced.task ?? "",
      backend: backend.name,
      seed: String(seed),
    });
    lap("write");
  }
  return { traced, graph, outputs, timings };
}
