// The plans of one training step over packs (pack.ts), as a device trainer runs them: every
// parameter, its gradient, its gradient sum and its AdamW moments at the same offset of five flat
// buffers of one layout. Then a step is
//   grad        per micro-batch: the gradient graph, its parameters bound as one buffer "$params",
//               its gradients written into one output "$grads" (one launch casts every bf16
//               gradient to f32; one casts every f32 master to its bf16 copy)
//   accumulate  for micro-batches after the first: acc + grad over the flat buffers, one launch
//   adamw       the packed AdamW (optimizer.ts): three launches
// and the trainer's copies are one per flat buffer, not one per tensor.

import type { AdamWConstants } from "../../kernels/multi-tensor.ts";
import { Graph } from "../ir/index.ts";
import { type LoweredGraph, type LowerOptions, lowerGraph } from "./lower.ts";
import { lowerPackedAdamW, type PackedAdamW } from "./optimizer.ts";
import { type PackLayout, packLayout, renamedLayout } from "./pack.ts";

export interface TrainingParam {
  readonly name: string;
  readonly shape: readonly number[];
  /** AdamW's weight decay applies (compiler/autodiff's adamwParams flag). */
  readonly decay: boolean;
}

export interface LoweredTrainingStep {
  /** Where each parameter (and its gradient, sum, m, v) lives in the flat buffers. */
  readonly layout: PackLayout;
  readonly grad: LoweredGraph;
  /** Inputs "acc" and "grad", output "acc" (flat f32); absent without accumulation. */
  readonly accumulate?: LoweredGraph;
  readonly adamw: PackedAdamW;
}

export const PACKED_GRADS = "$grads";

/** acc + grad over `elements` f32 values: the accumulation graph of one flat buffer. */
export function flatAccumulateGraph(elements: number): Graph {
  const g = new Graph();
  const input = (name: string) => g.add("input", [], { name, shape: [elements], dtype: "f32" });
  const sum = g.add("add", [input("acc").id, input("grad").id]);
  g.setOutput("acc", sum.id);
  return g;
}

export function lowerTrainingStep(
  gradGraph: Graph,
  params: readonly TrainingParam[],
  o: {
    readonly gradName: (param: string) => string;
    readonly accum: number;
    readonly adamw: AdamWConstants;
    readonly lower?: LowerOptions;
  },
): LoweredTrainingStep {
  const layout = packLayout(params);
  const grad = lowerGraph(gradGraph, {
    ...o.lower,
    packParams: layout,
    packOutputs: { name: PACKED_GRADS, layout: renamedLayout(layout, o.gradName) },
  });
  const decay = new Map(params.map((p) => [p.name, p.decay]));
  return {
    layout,
    grad,
    ...(o.accum > 1 ? { accumulate: lowerGraph(flatAccumulateGraph(layout.elements)) } : {}),
    adamw: lowerPackedAdamW(layout, (name) => decay.get(name) === true, o.adamw),
  };
}
