// Memory and communication of each data-parallel strategy, per GPU, for one optimizer step.
// Mixed precision as our trainer runs it (--precision bf16): a bf16 compute copy of the weights
// (2 B/param), f32 master weights (4), f32 gradients accumulated over micro-batches (4), AdamW m and
// v in f32 (8). Communication as runtime/train's device strategies issue it: gradients are reduced
// in f32 (4 B/param: a bf16 sum would round the partial sums to 8 bits), parameters are gathered in
// bf16 (2 B/param: the sharded strategies all-gather the master shards cast to bf16).
// hsdp is planned as the GPU runtime runs it: ZeRO-2 inside a node (the full bf16 replica, f32
// master, gradient and optimizer shards), the gradient shards all-reduced across nodes once per
// step. zero3: parameters gathered per block in bf16, for the forward and again for the backward.
// Gradient memory as runtime/train's device strategies hold it (f32 throughout):
//   ddp    the full sum (4 B/param); each gradient output is released at its bucket's hook, so
//          the gradient plan's arena holds about one bucket at a time (not counted).
//   zero1  the gradient plan's outputs (every gradient, read after the plan), the full sum, and
//          the reduced shard: 4 + 4 + 4/n B/param.
//   zero2 / zero3 / hsdp  the reduced shard (4/n), a second shard for a later micro-batch's
//          reduce-scatter when accumulating (4/n), one unit's staging buffer (the largest unit,
//          blocks or the root), and the gradient outputs still in the gradient plan's arena: they
//          are released at their unit's reduce-scatter hook, so at most the root unit's (written
//          from the backward's first launches to its last) and one block's are live at once.

import type { ModelProfile } from "./profile.ts";

export const STRATEGIES = ["ddp", "zero1", "zero2", "zero3", "hsdp"] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface Cluster {
  gpus: number;
  gpusPerNode: number;
}

export interface MemoryBreakdown {
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
  total: number;
}

export interface Traffic {
  /** Bytes each GPU sends over NVLink (inside a node) per optimizer step. */
  intraNodeBytes: number;
  /** Bytes each GPU sends over the network (between nodes) per optimizer step. */
  interNodeBytes: number;
}

/** The group parameters are sharded over: everything (zero*), one node (hsdp), nobody (ddp). */
export function shardGroup(s: Strategy, c: Cluster): number {
  if (s === "ddp") return 1;
  if (s === "hsdp") return Math.min(c.gpus, c.gpusPerNode);
  return c.gpus;
}

export function activationBytesPerSample(p: ModelProfile, checkpointing: boolean): number {
  return checkpointing ? p.checkpointBoundaryBytes + p.largestUnitBytes + p.outsideUnitBytes : p.activationBytes;
}

/**
 * Gradient bytes of the sharded strategies that stream their gradients (zero2, zero3, hsdp) over a
 * shard group of n: the shard (+ a micro-batch shard when accumulating), one unit's staging, and the
 * gradient plan's live outputs (the root unit + one block).
 */
export function streamedGradientBytes(p: ModelProfile, n: number, accum: number): number {
  const shards = (accum > 1 ? 2 : 1) * ((4 * p.params) / n);
  const staging = 4 * Math.max(p.largestUnitParams, p.outsideUnitParams);
  const live = 4 * (p.outsideUnitParams + p.largestUnitParams);
  return shards + staging + live;
}

export function memoryPerGpu(
  s: Strategy,
  p: ModelProfile,
  c: Cluster,
  microBatch: number,
  checkpointing: boolean,
  accum = 1,
): MemoryBreakdown {
  const P = p.params;
  const n = shardGroup(s, c);
  const unit = p.largestUnitParams;
  let weights: number;
  let gradients: number;
  let optimizer: number;
  switch (s) {
    case "ddp":
      weights = 2 * P + 4 * P;
      gradients = 4 * P;
      optimizer = 8 * P;
      break;
    case "zero1": // optimizer state and master weights sharded; the plan's gradients, the full sum and the reduced shard
      weights = 2 * P + (4 * P) / n;
      gradients = 4 * P + 4 * P + (4 * P) / n;
      optimizer = (8 * P) / n;
      break;
    case "zero2": // + gradients streamed: reduce-scattered unit by unit, only the shard summed
    case "hsdp": // zero2 inside a node
      weights = 2 * P + (4 * P) / n;
      gradients = streamedGradientBytes(p, n, accum);
      optimizer = (8 * P) / n;
      break;
    case "zero3": // + parameters sharded (f32 master shards, cast to bf16 when gathered); one unit gathered and the next prefetched
      weights = (4 * P) / n + 2 * 2 * unit;
      gradients = streamedGradientBytes(p, n, accum);
      optimizer = (8 * P) / n;
      break;
  }
  const activations = microBatch * activationBytesPerSample(p, checkpointing);
  return { weights, gradients, optimizer, activations, total: weights + gradients + optimizer + activations };
}

/** Ring collectives: all-reduce moves 2(n-1)/n of the buffer per GPU, reduce-scatter and all-gather (n-1)/n. */
const ring = (n: number) => (n - 1) / n;

export function trafficPerGpu(s: Strategy, p: ModelProfile, c: Cluster, accum: number): Traffic {
  const grad = 4 * p.params; // f32
  const param = 2 * p.params; // bf16
  const multiNode = c.gpus > c.gpusPerNode;
  const onWire = (bytes: number, spansNodes: boolean): Traffic =>
    spansNodes ? { intraNodeBytes: 0, interNodeBytes: bytes } : { intraNodeBytes: bytes, interNodeBytes: 0 };
  const n = c.gpus;
  switch (s) {
    case "ddp": // one all-reduce per step (no sync during accumulation)
      return onWire(2 * ring(n) * grad, multiNode);
    case "zero1": // reduce-scatter grads once per step + all-gather updated params
      return onWire(ring(n) * grad + ring(n) * param, multiNode);
    case "zero2": // grads reduce-scattered every micro-step (they are not kept whole), params gathered once
      return onWire(accum * ring(n) * grad + ring(n) * param, multiNode);
    case "zero3": // per micro-step: gather for forward, gather for backward, reduce-scatter grads
      return onWire(accum * ring(n) * (2 * param + grad), multiNode);
    case "hsdp": {
      const g = shardGroup(s, c);
      const replicas = c.gpus / g;
      const intra = accum * ring(g) * grad + ring(g) * param; // zero2 inside the node
      const inter = replicas > 1 ? 2 * ring(replicas) * (grad / g) : 0; // shards all-reduced across nodes once
      return { intraNodeBytes: intra, interNodeBytes: inter };
    }
  }
}
