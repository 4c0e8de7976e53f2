// The fusion stage: the pattern fusions in order (window attention first: its softmax must not be
// taken for a cross-attention core), each a whole-graph rewrite, then CSE + DCE.

import type { Graph } from "../ir/index.ts";
import { cse } from "./cse.ts";
import { dce } from "./dce.ts";
import { fuseCrossAttention } from "./fuse-cross-attention.ts";
import { fuseFpnMerge } from "./fuse-fpn-merge.ts";
import { fuseWindowAttention } from "./fuse-window-attention.ts";

export interface FusionCounts {
  windowAttention: number;
  fpnMerge: number;
  crossAttention: number;
}

export interface FuseOptions {
  /** Each fusion can be turned off on its own (all on by default). */
  readonly windowAttention?: boolean;
  readonly fpnMerge?: boolean;
  readonly crossAttention?: boolean;
}

export function fuse(graph: Graph, options: FuseOptions = {}): { graph: Graph; counts: FusionCounts } {
  const counts: FusionCounts = { windowAttention: 0, fpnMerge: 0, crossAttention: 0 };
  let g = graph;
  const stages = [
    ["windowAttention", fuseWindowAttention],
    ["crossAttention", fuseCrossAttention],
    ["fpnMerge", fuseFpnMerge],
  ] as const;
  for (const [name, pass] of stages) {
    if (options[name] === false) continue;
    const r = pass(g);
    g = r.graph;
    counts[name] = r.count;
  }
  return { graph: g === graph ? graph : dce(cse(g)), counts };
}
