// What the trainer loop drives once per optimizer step: K micro-batches and one update, on one
// process (StepRunner over the --backend executor) or on one rank of a data-parallel job
// (createDataParallel over the world's collectives). Both answer with the same StepOutcome: the
// mean loss over the global batch, the gradient norm, whether the update was applied, and the
// ranks' shared view of the step (an interrupt on any rank, unreadable samples, data positions), so
// every decision the loop takes (skip, stop, checkpoint) is the same on every rank.

import { type AdamWParam, adamwParams, decayExcluded } from "../../compiler/autodiff/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import type { TcpStore } from "../cuda/store.ts";
import type { HostCollectives } from "../parallel/collectives.ts";
import { createDataParallel } from "../parallel/create.ts";
import type { DataParallel, DataParallelStrategy } from "../parallel/data-parallel.ts";
import type { TensorMap } from "./executor.ts";
import { gradGraphOf, type OptimizerSettings, type OptimizerState, type StepRunner } from "./step.ts";

/** This rank's part of the step's bookkeeping, shared with the others. */
export interface LocalStepInfo {
  /** Whether a signal asked this rank to stop after the step (read once the micro-batches have run). */
  readonly interrupt: () => boolean;
  /** Unreadable samples this rank's loader has skipped so far. */
  readonly skippedSamples: number;
  /** This rank's loader position after the step. */
  readonly position: number;
}

export interface StepOutcome {
  /** Mean of every micro-batch loss of every rank (NaN/inf when any is). */
  readonly loss: number;
  /** The micro-batch losses, global micro-batch order (k * world + rank). */
  readonly losses: readonly number[];
  readonly gradNorm: number;
  readonly clipScale: number;
  /** The update was applied on every rank (loss and gradient finite). */
  readonly applied: boolean;
  /** Some rank was interrupted. */
  readonly interrupt: boolean;
  /** Unreadable samples skipped, all ranks. */
  readonly skippedSamples: number;
  /** Every rank's loader position, by rank. */
  readonly positions: readonly number[];
}

export interface StepEngine {
  readonly worldSize: number;
  readonly rank: number;
  /** The trained parameters (names, shapes, decay), in parameter order. */
  readonly params: readonly AdamWParam[];
  /** AdamW updates applied so far. */
  readonly optimizerStep: number;
  step(inputs: readonly TensorMap[], seeds: readonly number[], lr: number, local: LocalStepInfo): Promise<StepOutcome>;
  /** Full weights and moments (collective on a data-parallel job: every rank calls it). */
  state(): Promise<OptimizerState>;
  /** Waits for every rank (a no-op on one process). */
  barrier(): Promise<void>;
}

/** One process: the StepRunner over the backend executor, bit-identical to the trainer before data parallelism. */
export class LocalEngine implements StepEngine {
  readonly worldSize = 1;
  readonly rank = 0;
  constructor(
    private readonly runner: StepRunner,
    private readonly current: OptimizerState,
  ) {}

  get params(): readonly AdamWParam[] {
    return this.runner.params;
  }

  get optimizerStep(): number {
    return this.current.optimizerStep;
  }

  async step(inputs: readonly TensorMap[], seeds: readonly number[], lr: number, local: LocalStepInfo): Promise<StepOutcome> {
    const r = await this.runner.run(this.current, inputs, seeds, lr);
    return {
      loss: r.loss,
      losses: r.losses,
      gradNorm: r.gradNorm,
      clipScale: r.clipScale,
      applied: r.applied,
      interrupt: local.interrupt(),
      skippedSamples: local.skippedSamples,
      positions: [local.position],
    };
  }

  async state(): Promise<OptimizerState> {
    return this.current;
  }

  async barrier(): Promise<void> {}
}

export interface DistributedOptions {
  readonly world: HostCollectives;
  readonly strategy: DataParallelStrategy;
  /** hsdp: ranks per shard group. */
  readonly shardSize?: number;
  /** --device: this rank's device on its node (LOCAL_RANK). */
  readonly localRank?: number;
  /** --device cuda: the job's rendezvous store, where the NCCL communicator finds its unique id. */
  readonly store?: TcpStore;
}

// Positions travel through f32 collectives: split so that each half is an exact f32 integer.
const POSITION_SPLIT = 2 ** 22;

/** What every rank learns of a step from one all-gather: the StepOutcome minus the update's part. */
export type SharedStep = Omit<StepOutcome, "gradNorm" | "clipScale" | "applied">;

/**
 * One all-gather of every rank's micro-batch losses, interrupt flag, unreadable-sample count and
 * data position: afterwards every rank holds the same losses (global micro-batch order k x world +
 * rank), their mean, and the job's interrupt / skip / position bookkeeping. Collective.
 */
export async function shareStep(world: HostCollectives, losses: readonly number[], local: LocalStepInfo): Promise<SharedStep> {
  const K = losses.length;
  const size = world.size;
  const mine = new Float32Array(K + 4);
  mine.set(losses);
  mine[K] = local.interrupt() ? 1 : 0;
  mine[K + 1] = local.skippedSamples;
  mine[K + 2] = Math.floor(local.position / POSITION_SPLIT);
  mine[K + 3] = local.position % POSITION_SPLIT;
  const all = new Float32Array(mine.length * size);
  await world.allGather(mine, all);
  const n = mine.length;
  const gathered: number[] = [];
  for (let k = 0; k < K; k++) for (let r = 0; r < size; r++) gathered.push(all[r * n + k]);
  const positions: number[] = [];
  let interrupt = false;
  let skippedSamples = 0;
  for (let r = 0; r < size; r++) {
    interrupt ||= all[r * n + K] !== 0;
    skippedSamples += all[r * n + K + 1];
    positions.push(all[r * n + K + 2] * POSITION_SPLIT + all[r * n + K + 3]);
  }
  const loss = gathered.reduce((a, b) => a + b, 0) / gathered.length;
  return { loss, losses: gathered, interrupt, skippedSamples, positions };
}

/**
 * One rank of a data-parallel job. Per step: K micro-batches through the strategy (which reduces the
 * gradients), one all-gather of every rank's losses and bookkeeping (so the loss, the non-finite
 * skip and an interrupt are decided identically everywhere), then the strategy's step (reduction,
 * global-norm clipping, AdamW on this rank's part) or, after a non-finite loss, a skip on every rank.
 */
export class DistributedEngine implements StepEngine {
  readonly worldSize: number;
  readonly rank: number;
  private applied = 0;

  private constructor(
    private readonly dp: DataParallel,
    private readonly world: HostCollectives,
    readonly params: readonly AdamWParam[],
    private readonly trainedNames: ReadonlySet<string>,
    private readonly accum: number,
    optimizerStep: number,
  ) {
    this.worldSize = world.size;
    this.rank = world.rank;
    this.applied = optimizerStep;
  }

  /**
   * Collective: every rank calls it. `initial` are the starting weights (rank 0's are broadcast);
   * `resume`, when given, the full state of a checkpoint (each rank keeps its part).
   */
  static async create(
    forward: Graph,
    accum: number,
    settings: OptimizerSettings,
    options: DistributedOptions,
    initial: ReadonlyMap<string, HostTensor>,
    resume?: OptimizerState,
  ): Promise<DistributedEngine> {
    const gradGraph = gradGraphOf(forward, settings);
    const exclude = settings.exclude ?? decayExcluded;
    const params = adamwParams(gradGraph, exclude);
    const names = new Set(params.map((p) => p.name));
    const frozen = new Map([...initial].filter(([k]) => !names.has(k)));
    const dp = await createDataParallel({
      strategy: options.strategy,
      collectives: options.world,
      gradGraph,
      params: initial,
      accumSteps: accum,
      exclude,
      shardSize: options.shardSize,
      weightDecay: settings.weightDecay,
      maxGradNorm: settings.clip,
      beta1: settings.beta1,
      beta2: settings.beta2,
      eps: settings.eps,
    });
    if (resume) {
      dp.loadState({
        params: new Map([...frozen, ...resume.params]),
        m: new Map(resume.m),
        v: new Map(resume.v),
      });
    }
    return new DistributedEngine(dp, options.world, params, names, accum, resume?.optimizerStep ?? 0);
  }

  get optimizerStep(): number {
    return this.applied;
  }

  get strategy(): DataParallelStrategy {
    return this.dp.strategy;
  }

  async step(inputs: readonly TensorMap[], seeds: readonly number[], lr: number, local: LocalStepInfo): Promise<StepOutcome> {
    const K = this.accum;
    if (inputs.length !== K) throw new Error(`step: ${inputs.length} micro-batches for accumulation ${K}`);
    const mine: number[] = [];
    for (let k = 0; k < K; k++) {
      const out = await this.dp.microBatch(inputs[k], { seed: seeds[k], last: k === K - 1 });
      mine.push((out.get("loss") as HostTensor).data[0]);
    }
    const shared = await shareStep(this.world, mine, local);
    // Every rank holds the same losses, so a non-finite one skips the update everywhere.
    const skip = !Number.isFinite(shared.loss);
    const stats = await this.dp.step({ lr, step: this.applied + 1, skip });
    if (stats.finite) this.applied++;
    return {
      ...shared,
      gradNorm: skip ? Number.NaN : stats.gradNorm,
      clipScale: stats.clipScale,
      applied: stats.finite,
    };
  }

  async state(): Promise<OptimizerState> {
    const s = await this.dp.state();
    const pick = (m: Map<string, HostTensor>) => new Map([...m].filter(([k]) => this.trainedNames.has(k)));
    return { params: pick(s.params), m: pick(s.m), v: pick(s.v), optimizerStep: this.applied };
  }

  barrier(): Promise<void> {
    return this.world.barrier();
  }
}
