// The graph -> ExecutablePlan step the device backends and the device trainer call: compiler/lower's
// lowerGraph, once per graph object. An op without a kernel is compiler/lower's UserError, located
// at the model's source line (nothing falls back to the CPU silently).

import type { Graph } from "../../compiler/ir/index.ts";
import { type ExecutablePlan, lowerGraph as lowerToPlan } from "../../compiler/lower/index.ts";

/** Why graphs cannot be lowered here, or true (kept for the backends' availability check). */
export function loweringAvailable(): true | string {
  return true;
}

const plans = new WeakMap<Graph, ExecutablePlan>();

/** The executable plan of a graph, lowered once per graph object. */
export function lowerGraph(graph: Graph): ExecutablePlan {
  let plan = plans.get(graph);
  if (!plan) {
    plan = lowerToPlan(graph).plan;
    plans.set(graph, plan);
  }
  return plan;
}
