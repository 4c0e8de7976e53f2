// Activation checkpointing as a graph transformation: which forward nodes `grad` recomputes during
// the backward instead of keeping their values. The unit is a repeated block, named by the deepest
// prefix of a node's module scope that ends in an index ("stages.2.blocks.5.attn.qkv" ->
// "stages.2.blocks.5"): the rule runtime/plan's `unitOf` uses for `ptc plan`'s checkpointing
// estimate and runtime/parallel's `blockUnitOf` for ZeRO units.
//
// A checkpointed unit's forward nodes are cut into segments (maximal runs of consecutive nodes of
// that unit; parameters, inputs and constants neither belong to a segment nor break one). When the
// backward first reaches a segment, `grad` emits a copy of the whole segment (the recomputed
// forward) right there, and the gradient rules of the segment's nodes read the copies. The values a
// segment reads from outside itself (its input activations: the checkpoints) stay as they are; the
// forward's own values inside the segment are then read only by the forward, so they die there.

import type { Graph, Node } from "../ir/index.ts";

/** The checkpoint unit of a module scope, or undefined outside any repeated block. */
export function checkpointUnitOf(scope: string | undefined): string | undefined {
  if (!scope) return undefined;
  const parts = scope.split(".");
  for (let i = parts.length; i > 1; i--) if (/^\d+$/.test(parts[i - 1])) return parts.slice(0, i).join(".");
  return undefined;
}

/** Nodes that are never recomputed: their values are not activations of a unit. */
const isSource = (n: Node) => n.op === "param" || n.op === "input" || n.op === "const";

/** Every checkpoint unit of a forward graph, in order of first appearance. */
export function checkpointUnits(forward: Graph): string[] {
  const seen = new Set<string>();
  for (const n of forward.nodes) {
    if (isSource(n)) continue;
    const u = checkpointUnitOf(n.scope);
    if (u !== undefined) seen.add(u);
  }
  return [...seen];
}

export interface RecomputeSegment {
  readonly index: number;
  readonly unit: string;
  /** Forward node ids, ascending. */
  readonly nodes: readonly number[];
}

export interface RecomputePlan {
  /** Per forward node: its segment's index, or -1 (kept, not recomputed). */
  readonly segmentOf: Int32Array;
  readonly segments: readonly RecomputeSegment[];
}

/** The segments of the units `recompute` selects (it is called with unit names). */
export function recomputeSegments(forward: Graph, recompute: (unit: string) => boolean): RecomputePlan {
  const segmentOf = new Int32Array(forward.nodes.length).fill(-1);
  const segments: { index: number; unit: string; nodes: number[] }[] = [];
  const chosen = new Map<string, boolean>();
  let current: (typeof segments)[number] | undefined;
  for (const n of forward.nodes) {
    if (isSource(n)) continue;
    const unit = checkpointUnitOf(n.scope);
    let on = false;
    if (unit !== undefined) {
      on = chosen.get(unit) ?? recompute(unit);
      chosen.set(unit, on);
    }
    if (!on || unit === undefined) {
      current = undefined;
      continue;
    }
    if (current?.unit !== unit) {
      current = { index: segments.length, unit, nodes: [] };
      segments.push(current);
    }
    current.nodes.push(n.id);
    segmentOf[n.id] = current.index;
  }
  return { segmentOf, segments };
}

/** Marks a recomputed node (and keeps CSE from merging it back into the forward value it copies). */
export const RECOMPUTE_ATTR = "recompute";
