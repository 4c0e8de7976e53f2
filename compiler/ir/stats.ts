// Counting: parameters, FLOPs and the op histogram of a graph.

import type { Graph } from "./graph.ts";
import { opSpec } from "./ops/index.ts";
import { numel } from "./types.ts";

export interface GraphStats {
  params: number;
  flops: number;
  nodes: number;
  ops: Record<string, number>;
}

export function graphStats(g: Graph): GraphStats {
  let params = 0;
  let flops = 0;
  const ops: Record<string, number> = {};
  for (const n of g.nodes) {
    ops[n.op] = (ops[n.op] ?? 0) + 1;
    if (n.op === "param") params += numel(n.shape);
    flops += opSpec(n.op).flops(
      n.inputs.map((i) => g.nodes[i]),
      n,
      n.attrs,
    );
  }
  return { params, flops, nodes: g.nodes.length, ops };
}

/** Parameters grouped by the first `depth` components of their dotted names. */
export function paramsByPrefix(g: Graph, depth: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const n of g.params()) {
    const key = String(n.attrs.name).split(".").slice(0, depth).join(".");
    out.set(key, (out.get(key) ?? 0) + numel(n.shape));
  }
  return out;
}
