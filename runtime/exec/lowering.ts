// The graph -> ExecutablePlan step the device backends call (compiler/lower). Kept behind this one
// function so the backends, the trainer and the tests share the entry point and its caching.

import type { Graph } from "../../compiler/ir/index.ts";
import { UserError } from "../../compiler/ir/index.ts";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";

/** The graph input compiler/lower creates for the run's seed (dropout / drop-path streams): an i32 scalar. */
export const SEED_INPUT = "$seed";

/** Why graphs cannot be lowered here, or true. */
export function loweringAvailable(): true | string {
  return "the graph lowering (compiler/lower: graph -> kernel launches) has not landed yet, so no model can run on a device; use the cpu backend";
}

const plans = new WeakMap<Graph, ExecutablePlan>();

/** The executable plan of a graph (lowered once per graph object); `flag` locates a UserError. */
export function lowerGraph(graph: Graph, flag = "--backend"): ExecutablePlan {
  const known = plans.get(graph);
  if (known) return known;
  const why = loweringAvailable();
  if (why !== true) throw new UserError(why, flag);
  throw new Error("unreachable");
}
