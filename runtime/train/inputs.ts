// From a data batch to the model's graph inputs, matched by name: `image` [B, 3, H, W] from the
// pixels, `label` from the class ids ([B]) or the label map ([B, H, W]); anything else (the SimMIM
// `mask`) from the model's own `sampleInputs` hook, drawn with a per-micro-batch seed.

import type { ModelDefinition, TensorData, TracedModel } from "../../compiler/dsl/model.ts";
import { formatShape, type Graph, UserError } from "../../compiler/ir/index.ts";
import { hashString, mix32 } from "../cpu/random.ts";
import { type HostTensor, hostTensor } from "../cpu/tensor.ts";
import type { Batch } from "../data/loader.ts";
import type { DataTask } from "../data/source.ts";

/** What the data pipeline must deliver for a traced training graph. */
export function dataTaskOf(graph: Graph, task: string | undefined): DataTask {
  if (task === "pretrain" || task === "seg" || task === "classify") return task;
  const label = graph.inputs().find((n) => n.attrs.name === "label");
  if (!label) return "pretrain";
  return label.shape.length === 1 ? "classify" : "seg";
}

/** Checks up front that every graph input has a source, so a mismatch fails before training. */
export function checkInputs(graph: Graph, def: ModelDefinition): void {
  for (const n of graph.inputs()) {
    const name = String(n.attrs.name);
    if (name === "image") {
      if (n.shape.length !== 4 || n.shape[1] !== 3 || n.dtype === "i32") {
        throw new UserError(
          `the model's 'image' input is ${n.dtype}${formatShape(n.shape)}; the data pipeline gives f32 [B, 3, H, W]`,
          "--data",
        );
      }
    } else if (name === "label") {
      if (n.dtype !== "i32" || (n.shape.length !== 1 && n.shape.length !== 3)) {
        throw new UserError(
          `the model's 'label' input is ${n.dtype}${formatShape(n.shape)}; the data pipeline gives i32 [B] or [B, H, W]`,
          "--data",
        );
      }
    } else if (!def.sampleInputs) {
      throw new UserError(
        `the model input '${name}' has no source: the data pipeline gives 'image' and 'label', and the model has no sampleInputs hook`,
        "--data",
      );
    }
  }
}

/**
 * The seed of the inputs a model draws itself (masks) for one sample: a function of the run seed and
 * the sample's RNG key (which the loader derives from the seed, epoch and dataset index), so a
 * sample gets the same mask whichever micro-batch or rank it lands in.
 */
export function extraInputSeed(seed: number, sampleKey: number): number {
  return mix32((seed ^ hashString("model-inputs") ^ Math.imul(sampleKey + 1, 0x9e3779b9)) >>> 0);
}

/** The model's `sampleInputs`, drawn one sample at a time (batch 1, that sample's seed) and stacked. */
function drawPerSample(traced: TracedModel, def: ModelDefinition, seeds: readonly number[]): Map<string, TensorData> {
  const parts = seeds.map((s) => def.sampleInputs?.(traced.config, { ...traced.options, batch: 1 }, s) ?? {});
  const out = new Map<string, TensorData>();
  for (const name of Object.keys(parts[0] ?? {})) {
    const first = parts[0][name];
    const per = first.data.length;
    const data = first.dtype === "i32" ? new Int32Array(per * seeds.length) : new Float32Array(per * seeds.length);
    parts.forEach((p, i) => {
      const d = p[name];
      if (!d || d.data.length !== per || d.shape[0] !== 1)
        throw new UserError(`sampleInputs gave '${name}' of another size for batch 1`, "--data");
      data.set(d.data, i * per);
    });
    out.set(name, { shape: [seeds.length, ...first.shape.slice(1)], dtype: first.dtype, data });
  }
  return out;
}

/** The graph inputs of one micro-batch; `seed` is the run's seed (per-sample draws use extraInputSeed). */
export function batchInputs(traced: TracedModel, def: ModelDefinition, batch: Batch, seed: number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let extra: Map<string, TensorData> | undefined;
  for (const n of traced.graph.inputs()) {
    const name = String(n.attrs.name);
    let t: HostTensor | undefined;
    if (name === "image") t = batch.image;
    else if (name === "label") t = n.shape.length === 1 ? batch.classId : batch.labels;
    else {
      extra ??= drawPerSample(
        traced,
        def,
        batch.sampleKeys.map((k) => extraInputSeed(seed, k)),
      );
      const d = extra.get(name);
      if (d) t = hostTensor(d.shape, d.dtype, d.data);
    }
    if (!t) throw new UserError(`no data for the model input '${name}' ${n.dtype}${formatShape(n.shape)}`, "--data");
    if (t.shape.join() !== n.shape.join()) {
      throw new UserError(
        `the data for '${name}' is ${formatShape(t.shape)}, the model expects ${formatShape(n.shape)} (check --image-size)`,
        "--data",
      );
    }
    out.set(name, t);
  }
  return out;
}
