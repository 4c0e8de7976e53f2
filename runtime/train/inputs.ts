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

/** The seed of micro-batch inputs the model draws itself (masks): a function of the run seed and stream position. */
export function extraInputSeed(seed: number, position: number): number {
  return mix32((seed ^ hashString("model-inputs") ^ Math.imul(position + 1, 0x9e3779b9)) >>> 0);
}

export function batchInputs(traced: TracedModel, def: ModelDefinition, batch: Batch, seed: number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let extra: Record<string, TensorData> | undefined;
  for (const n of traced.graph.inputs()) {
    const name = String(n.attrs.name);
    let t: HostTensor | undefined;
    if (name === "image") t = batch.image;
    else if (name === "label") t = n.shape.length === 1 ? batch.classId : batch.labels;
    else {
      extra ??= def.sampleInputs?.(traced.config, traced.options, seed) ?? {};
      const d = extra[name];
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
