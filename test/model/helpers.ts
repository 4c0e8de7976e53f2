// Shared by the model tests: golden fixtures, tracing a single module, running on the CPU
// executor, and the error measure the golden tests use.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineModel, instance, type Module, spec, traceModel } from "../../compiler/dsl/index.ts";
import type { ModelDefinition } from "../../compiler/dsl/model.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";
import perceptnet, { type PerceptNetConfig } from "../../model/perceptnet.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { readSafetensors } from "../../runtime/io/index.ts";

export const goldenDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../golden/model");

export interface GoldenCase {
  readonly kind: string;
  readonly files: { weights: string; inputs: string; expected: string };
  readonly [key: string]: unknown;
}

export const manifest = JSON.parse(readFileSync(path.join(goldenDir, "manifest.json"), "utf8")) as Record<string, GoldenCase>;

export function golden(name: string) {
  const c = manifest[name];
  if (!c) throw new Error(`no golden case ${name}`);
  const file = (f: string) => path.join(goldenDir, f);
  return {
    info: c,
    weightsPath: file(c.files.weights),
    weights: readSafetensors(file(c.files.weights)),
    inputs: readSafetensors(file(c.files.inputs)),
    expected: readSafetensors(file(c.files.expected)),
  };
}

/** Traces `forward` of a single module on inputs of the given shapes (one output, `y`). */
export function traceModule<M extends Module>(module: M, shape: readonly number[], forward: (m: M, x: never) => unknown): Graph {
  const def = defineModel({
    name: "module",
    configs: { only: {} },
    defaultConfig: "only",
    create: () =>
      instance({
        module,
        inputs: { x: spec([...shape]) },
        forward: ({ x }) => ({ y: forward(module, x as never) as never }),
      }),
  });
  return dce(cse(traceModel(def).graph));
}

/** PerceptNet's real definition with one extra config (the golden sizes), traced and optimised. */
export function tracePerceptNet(config: PerceptNetConfig, opts: { task?: string; batch: number; imageSize: [number, number] }) {
  const def: ModelDefinition = { ...perceptnet, configs: { golden: config }, defaultConfig: "golden" } as ModelDefinition;
  const traced = traceModel(def, { config: "golden", ...opts });
  return { def, traced, graph: dce(cse(traced.graph)) };
}

export function runCpu(graph: Graph, params: ReadonlyMap<string, HostTensor>, inputs: ReadonlyMap<string, HostTensor>) {
  return execute(graph, { params, inputs }).outputs;
}

/**
 * max |actual - expected| / max |expected|: the error relative to the output's scale. Per-element
 * relative error is meaningless for values near zero (softmax tails, logits crossing zero), and
 * f32 summation-order differences scale with the magnitudes being summed, not with each result.
 */
export function relativeError(actual: HostTensor, expected: HostTensor): number {
  if (actual.shape.join() !== expected.shape.join()) {
    throw new Error(`shape [${actual.shape.join(",")}] differs from torch's [${expected.shape.join(",")}]`);
  }
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const d = Math.abs(actual.data[i] - expected.data[i]);
    diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(expected.data[i]));
  }
  return diff / Math.max(scale, 1e-30);
}
