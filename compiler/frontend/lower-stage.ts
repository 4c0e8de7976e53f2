// The `lower` stage of ptc build: the built graph to an executable plan (compiler/lower). Fused ops
// whose kernels have not landed yet (window attention, cross-attention, FPN merge) cannot be lowered;
// then the unfused graph is lowered instead, and the summary says so and why (the same maths: the
// fusion tests prove fused == unfused). Any other op without a kernel is a build error at its line.

import type { Graph } from "../ir/index.ts";
import { type LoweredGraph, lowerGraph, unloweredOps } from "../lower/index.ts";

export interface LowerStageResult {
  lowered: LoweredGraph;
  /** Which graph the plan runs. */
  graph: "fused" | "unfused";
  /** Why the unfused graph was lowered, when it was. */
  reason?: string;
}

const FUSED_OPS = new Set(["windowAttention", "windowAttentionBackward", "crossAttention", "crossAttentionBackward", "fpnMerge"]);

export function lowerStage(graph: Graph, unfused: Graph, fused: boolean): LowerStageResult {
  if (fused) {
    const missing = unloweredOps(graph).filter((op) => FUSED_OPS.has(op));
    if (missing.length > 0) {
      return {
        lowered: lowerGraph(unfused),
        graph: "unfused",
        reason: `no kernel yet for the fused ${missing.join(", ")}: the plan runs the unfused graph`,
      };
    }
  }
  return { lowered: lowerGraph(graph), graph: fused ? "fused" : "unfused" };
}
