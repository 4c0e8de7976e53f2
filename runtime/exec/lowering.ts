// The graph -> ExecutablePlan step the device backends and the device trainer call: compiler/lower's
// lowerGraph, once per graph object. An op without a kernel is compiler/lower's UserError, located
// at the model's source line (nothing falls back to the CPU silently).

import type { Graph } from "../../compiler/ir/index.ts";
import { type ExecutablePlan, type LowerOptions, lowerGraph as lowerToPlan } from "../../compiler/lower/index.ts";

/** Why graphs cannot be lowered here, or true (kept for the backends' availability check). */
export function loweringAvailable(): true | string {
  return true;
}

const plans = new WeakMap<Graph, Map<string, ExecutablePlan>>();

/**
 * The executable plan of a graph, lowered once per graph object and options. `packParams` lays the
 * parameters out in one buffer (one launch casts them all to bf16): for callers that set params by
 * name (the backends); a caller binding parameters one by one needs them unpacked (the default).
 */
export function lowerGraph(graph: Graph, options: Pick<LowerOptions, "packParams"> = {}): ExecutablePlan {
  let byOptions = plans.get(graph);
  if (!byOptions) {
    byOptions = new Map();
    plans.set(graph, byOptions);
  }
  const key = options.packParams === true ? "packed" : options.packParams ? JSON.stringify(options.packParams) : "";
  let plan = byOptions.get(key);
  if (!plan) {
    plan = lowerToPlan(graph, options).plan;
    byOptions.set(key, plan);
  }
  return plan;
}
