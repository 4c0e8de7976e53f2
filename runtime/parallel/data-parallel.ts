// The interface the trainer drives: one object per rank that owns the weights and optimizer state
// of a data-parallel strategy. Per optimizer step the trainer calls microBatch() (or, for strategies
// that keep full weights, runs the backward itself and calls addGradients()) once per micro-batch,
// then step(); the object does the reductions, the global-norm clipping and the (sharded) AdamW
// update, and gathers what must be whole again.
import { type AdamWOptions, decayExcluded } from "../../compiler/autodiff/index.ts";
import { type Graph, type Shape, UserError } from "../../compiler/ir/index.ts";
import type { ExecuteOptions, HostTensor } from "../cpu/index.ts";
import type { HostCollectives } from "./collectives.ts";
import type { ParamSpec } from "./flat-layout.ts";

export const DATA_PARALLEL_STRATEGIES = ["ddp", "zero1", "zero2", "zero3", "hsdp"] as const;
export type DataParallelStrategy = (typeof DATA_PARALLEL_STRATEGIES)[number];

export interface DataParallelOptions extends AdamWOptions {
  readonly strategy: DataParallelStrategy;
  /** The world (every rank of the job). */
  readonly collectives: HostCollectives;
  /** The backward graph of one micro-batch: grad(forward, { loss }), with `grad/<param>` outputs. */
  readonly gradGraph: Graph;
  /**
   * Initial full weights. Rank 0's are broadcast to every rank, so the others may pass anything of
   * the right shapes (e.g. their own initParams). Parameters without a `grad/<name>` output are
   * frozen: kept whole on every rank and never updated.
   */
  readonly params: ReadonlyMap<string, HostTensor>;
  /** Micro-batches per optimizer step: the last one triggers DDP's and ZeRO-1's reduction (default 1). */
  readonly accumSteps?: number;
  /** Parameters without weight decay (default decayExcluded). */
  readonly exclude?: (name: string, shape: Shape) => boolean;
  /** DDP: gradient bucket size (default 25 MiB, as torch). */
  readonly bucketCapBytes?: number;
  /** hsdp: ranks per shard group (one node's GPUs); the world must be a multiple. */
  readonly shardSize?: number;
  /** zero3/hsdp: also gather the next segment's units before a segment runs (default 1, as FSDP). */
  readonly prefetch?: 0 | 1;
  /** zero2/zero3/hsdp: the unit (flat buffer) of a parameter (default blockUnitOf). */
  readonly unitOf?: (paramName: string) => string;
  /** Options of the CPU executor (bf16 rounding). */
  readonly execute?: Omit<ExecuteOptions, "seed" | "keepAll">;
}

export interface StepHyper {
  readonly lr: number;
  /** 1-based number of this optimizer step (AdamW bias correction). */
  readonly step: number;
  /**
   * Drop this step's gradients without updating (the trainer saw a non-finite loss, agreed by every
   * rank): no communication, `finite: false`. Every rank must pass the same value.
   */
  readonly skip?: boolean;
}

export interface StepStats {
  /** Global L2 norm of the averaged gradient before clipping (what clip_grad_norm_ returns). */
  readonly gradNorm: number;
  readonly clipScale: number;
  /** False when the norm was inf/NaN: nothing was updated (the trainer counts a skipped step). */
  readonly finite: boolean;
  readonly microBatches: number;
}

/** Full per-parameter tensors: what a checkpoint stores, independent of world size and strategy. */
export interface OptimizerState {
  readonly params: Map<string, HostTensor>;
  readonly m: Map<string, HostTensor>;
  readonly v: Map<string, HostTensor>;
}

/** Bytes this rank holds (f32 everywhere on the CPU backend). */
export interface MemoryReport {
  /** Full weights kept on every rank (DDP, ZeRO-1/2; 0 for ZeRO-3/HSDP). */
  readonly replicatedParamBytes: number;
  /** f32 master shard (0 for DDP, whose replicated weights are the masters). */
  readonly masterShardBytes: number;
  /** Gradient accumulators kept between micro-batches. */
  readonly gradientBytes: number;
  /** AdamW m and v. */
  readonly optimizerBytes: number;
  /** ZeRO-3/HSDP: most parameter bytes gathered at once. */
  readonly peakGatheredParamBytes: number;
  /** ZeRO-2/3/HSDP: most bytes of full (unreduced) unit gradients alive at once. */
  readonly peakUnitGradientBytes: number;
}

export interface MicroBatchOptions {
  /** Whether this is the step's last micro-batch (default: the accumSteps-th since the last step). */
  readonly last?: boolean;
  /** Dropout / drop-path seed of this micro-batch. */
  readonly seed?: number;
}

export interface DataParallel {
  readonly strategy: DataParallelStrategy;
  readonly rank: number;
  readonly worldSize: number;
  /** Forward + backward of this rank's micro-batch; returns the graph's other outputs (the loss...). */
  microBatch(
    inputs: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>,
    options?: MicroBatchOptions,
  ): Promise<Map<string, HostTensor>>;
  /** Gradients the trainer computed itself with currentParams() (DDP, ZeRO-1, ZeRO-2). */
  addGradients(grads: ReadonlyMap<string, HostTensor>, options?: Pick<MicroBatchOptions, "last">): Promise<void>;
  /** Reduction, clipping by the global norm, AdamW on this rank's part, re-gather. */
  step(hyper: StepHyper): Promise<StepStats>;
  /** The full weights to run a forward with, without communication (not ZeRO-3/HSDP: use fullParams). */
  currentParams(): ReadonlyMap<string, HostTensor>;
  /** Full weights (copies); collective for ZeRO-3/HSDP: every rank must call it. */
  fullParams(): Promise<Map<string, HostTensor>>;
  /** Full weights and moments (copies) for a checkpoint; collective: every rank must call it. */
  state(): Promise<OptimizerState>;
  /** Restores full weights and moments (each rank keeps its part); no communication. */
  loadState(state: OptimizerState): void;
  memory(): MemoryReport;
}

/** The trained parameters of a backward graph (those with `grad/<name>`), in parameter order. */
export function trainedParams(gradGraph: Graph): { trained: ParamSpec[]; frozen: string[] } {
  const trained: ParamSpec[] = [];
  const frozen: string[] = [];
  for (const p of gradGraph.params()) {
    const name = String(p.attrs.name);
    if (p.dtype !== "i32" && gradGraph.outputs.has(`grad/${name}`)) trained.push({ name, shape: p.shape });
    else frozen.push(name);
  }
  if (trained.length === 0) throw new UserError("data parallel: the backward graph has no grad/<param> outputs");
  return { trained, frozen };
}

export const isGradOutput = (name: string) => name.startsWith("grad/");
export const paramOfGrad = (name: string) => name.slice("grad/".length);

export function decayOf(options: DataParallelOptions, params: readonly ParamSpec[]): Map<string, boolean> {
  const exclude = options.exclude ?? decayExcluded;
  return new Map(params.map((p) => [p.name, !exclude(p.name, p.shape)]));
}

/** A value of `params`, checked against the graph's shape. */
export function initialValue(params: ReadonlyMap<string, HostTensor>, p: ParamSpec): Float32Array {
  const t = params.get(p.name);
  if (!t) throw new UserError(`data parallel: no initial value for parameter ${p.name}`, p.name);
  if (t.shape.join() !== p.shape.join()) {
    throw new UserError(`data parallel: parameter ${p.name} has shape [${t.shape}], expected [${p.shape}]`, p.name);
  }
  return t.data as Float32Array;
}

/** The AdamW settings of `options` that are set: adamwUpdate spreads its defaults under them, so an undefined would win. */
export function adamwOptionsOf(options: AdamWOptions): AdamWOptions {
  const { beta1, beta2, eps, weightDecay, maxGradNorm } = options;
  return Object.fromEntries(
    Object.entries({ beta1, beta2, eps, weightDecay, maxGradNorm }).filter(([, v]) => v !== undefined),
  ) as AdamWOptions;
}

/** clipScale exactly as adamwUpdate's graph computes it in f32: min(1, max / (norm + 1e-6)). */
export function clipScale(norm: number, maxGradNorm: number | undefined): number {
  if (maxGradNorm === undefined || !(maxGradNorm > 0)) return 1;
  const f = Math.fround;
  return Math.min(1, f(f(maxGradNorm) / f(norm + f(1e-6))));
}

export function f32Tensor(shape: Shape, data: Float32Array): HostTensor {
  return { shape, dtype: "f32", data };
}

export function copyTensor(t: HostTensor): HostTensor {
  return { shape: [...t.shape], dtype: t.dtype, data: t.data.slice() };
}
