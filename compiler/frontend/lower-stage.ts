// The `lower` stage of ptc build: the built graph to an executable plan (compiler/lower). A fused op
// whose kernels do not cover its configuration (an f32 graph: the fused kernels are bf16; the window
// attention backward, whose table gradients have no kernel yet) cannot be lowered; then the unfused
// graph is lowered instead, and the summary says so and why (the same maths: the fusion tests prove
// fused == unfused). Any other op without a kernel is a build error at its source line.

import type { Graph } from "../ir/index.ts";
import { type LoweredGraph, lowerGraph, unlowerable } from "../lower/index.ts";

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
    const missing = unlowerable(graph).filter((m) => FUSED_OPS.has(m.op));
    if (missing.length > 0) {
      return {
        lowered: lowerGraph(unfused),
        graph: "unfused",
        reason: `the plan runs the unfused graph: ${missing.map((m) => `${m.op}: ${m.why}`).join("; ")}`,
      };
    }
  }
  return { lowered: lowerGraph(graph), graph: fused ? "fused" : "unfused" };
}
