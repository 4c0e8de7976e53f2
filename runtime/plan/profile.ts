// What the planner needs to know about a model, measured on its traced forward graph (one sample):
// parameters, FLOPs, and the bytes of activations a training step keeps for the backward pass,
// in total and per checkpoint unit (a repeated block, from the nodes' module scopes).

import { type Graph, graphStats, numel } from "../../compiler/ir/index.ts";

export interface ModelProfile {
  params: number;
  /** Forward FLOPs for one sample. */
  flopsPerSample: number;
  /** Activation bytes kept for backward for one sample, no checkpointing (bf16 compute). */
  activationBytes: number;
  /** With one checkpoint per unit: the units' input tensors, which stay live. */
  checkpointBoundaryBytes: number;
  /** The largest unit's own activations (recomputed and held during its backward). */
  largestUnitBytes: number;
  /** Bytes of activations outside any unit (stem, decoder, heads), always kept. */
  outsideUnitBytes: number;
  /** Parameters of the largest unit (ZeRO-3 gathers one unit at a time, plus one prefetched). */
  largestUnitParams: number;
  /**
   * Parameters outside any unit (stem, decoder, heads): the runtime's root unit, reduced as one. Its
   * gradients are written from the backward's first launches (heads) to its last (stem).
   */
  outsideUnitParams: number;
  units: number;
}

/** Ops that only move or view data: their outputs need not be kept for backward. */
const VIEWS = new Set(["reshape", "permute", "broadcastTo", "slice", "roll", "pad", "concat", "cast", "take"]);

/** The checkpoint unit of a scope: its deepest prefix ending in an index ("stages.2.blocks.5"). */
export function unitOf(scope: string | undefined): string | undefined {
  if (!scope) return undefined;
  const parts = scope.split(".");
  for (let i = parts.length; i > 0; i--) if (/^\d+$/.test(parts[i - 1]) && i > 1) return parts.slice(0, i).join(".");
  return undefined;
}

/** Profiles a forward graph traced with batch 1; activations counted at `bytesPerElement` (2 = bf16). */
export function profileGraph(g: Graph, bytesPerElement = 2): ModelProfile {
  const stats = graphStats(g);
  const unitBytes = new Map<string, number>();
  const unitInputs = new Map<string, number>();
  let outside = 0;
  let total = 0;
  for (const n of g.nodes) {
    if (n.op === "param" || n.op === "const" || n.op === "input") continue;
    const unit = unitOf(n.scope);
    if (unit) {
      // A unit's input is the first value it reads from outside itself.
      for (const i of n.inputs) {
        const src = g.nodes[i];
        if (src.op !== "param" && src.op !== "const" && unitOf(src.scope) !== unit && !unitInputs.has(unit)) {
          unitInputs.set(unit, numel(src.shape) * bytesPerElement);
        }
      }
    }
    if (VIEWS.has(n.op)) continue;
    const bytes = numel(n.shape) * bytesPerElement;
    total += bytes;
    if (unit) unitBytes.set(unit, (unitBytes.get(unit) ?? 0) + bytes);
    else outside += bytes;
  }
  const unitParams = new Map<string, number>();
  let outsideParams = 0;
  for (const p of g.params()) {
    const unit = unitOf(String(p.attrs.name).split(".").slice(0, -1).join("."));
    if (unit) unitParams.set(unit, (unitParams.get(unit) ?? 0) + numel(p.shape));
    else outsideParams += numel(p.shape);
  }
  return {
    params: stats.params,
    flopsPerSample: stats.flops,
    activationBytes: total,
    checkpointBoundaryBytes: [...unitInputs.values()].reduce((a, b) => a + b, 0),
    largestUnitBytes: Math.max(0, ...unitBytes.values()),
    outsideUnitBytes: outside,
    largestUnitParams: Math.max(0, ...unitParams.values()),
    outsideUnitParams: outsideParams,
    units: unitBytes.size,
  };
}
