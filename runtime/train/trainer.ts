// The training loop: trace the model's training forward, build the step graphs, stream batches,
// step, log, checkpoint. Everything that decides the numbers (weights, moments, step counters,
// the data position, the seed) is in the checkpoint, and every random draw is a function of the
// seed and the step or stream position, so a resumed run repeats the uninterrupted one exactly.
//
// On a data-parallel job (ctx.distributed) every rank runs this loop: its loader reads its own
// slots of each global batch, the engine reduces the gradients and shares the losses and
// bookkeeping, so every rank takes the same decisions; only rank 0 reports, logs and writes
// checkpoints (full tensors, gathered from every rank).

import { adamwParams } from "../../compiler/autodiff/index.ts";
import { type ModelDefinition, type TracedModel, traceModel } from "../../compiler/dsl/model.ts";
import { formatShape, type Graph, UserError } from "../../compiler/ir/index.ts";
import { type FusionCounts, fuse } from "../../compiler/passes/index.ts";
import { hashString, initParams, mix32 } from "../cpu/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import { DataLoader, type SkippedSample } from "../data/loader.ts";
import { openDataSource } from "../data/open.ts";
import type { DataSource } from "../data/source.ts";
import type { DataParallelStrategy } from "../parallel/data-parallel.ts";
import {
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  type Checkpoint,
  type CheckpointState,
  removeStaleTemps,
  saveCheckpoint,
} from "./checkpoint.ts";
import { globalPosition, resumePosition } from "./data-position.ts";
import { checkDeviceStrategy, DeviceDataParallelEngine } from "./device-parallel.ts";
import { DeviceEngine, type TrainDevice } from "./device-step.ts";
import { DistributedEngine, type DistributedOptions, LocalEngine, type StepEngine } from "./engine.ts";
import { type Executor, executorNamed, type TensorMap } from "./executor.ts";
import { applyInitWeights, type InitReport, summariseNames } from "./init-weights.ts";
import { batchInputs, checkInputs, dataTaskOf } from "./inputs.ts";
import { JsonlLog, type ProgressSink, silentProgress } from "./progress.ts";
import { recomputePredicate } from "./recompute.ts";
import { learningRate, type Schedule } from "./schedule.ts";
import { checkLossOutput, type OptimizerSettings, type OptimizerState, StepRunner } from "./step.ts";

/** Every setting of a run; stored in each checkpoint and continued by --resume. */
export interface RunConfig {
  readonly model: string;
  readonly config: string;
  readonly task: string | null;
  readonly data: string;
  readonly steps: number;
  readonly microBatch: number;
  readonly accum: number;
  readonly lr: number;
  readonly minLr: number;
  readonly warmup: number;
  readonly weightDecay: number;
  readonly clip: number | null;
  readonly precision: "f32" | "bf16";
  /** Backend of the shared registry (runtime/run): "cpu" today. */
  readonly backend: string;
  readonly seed: number;
  readonly imageSize: readonly [number, number] | null;
  readonly ckptDir: string;
  /** Save every N steps (0: only at the end and on interruption). */
  readonly ckptEvery: number;
  readonly keep: number;
  readonly log: string | null;
  /** Stop after this many non-finite steps in a row. */
  readonly maxSkips: number;
  /** Data worker threads (0: decode inline). */
  readonly workers: number;
  readonly init: string | null;
  /** Ranks of the data-parallel job (1: one process). */
  readonly world: number;
  /** Data-parallel strategy when world > 1. */
  readonly strategy: DataParallelStrategy;
  /** hsdp: ranks per shard group (default: the ranks of one node). */
  readonly shardSize: number | null;
  /** --device: the whole step on this device with the weights resident (device-step.ts); null: --backend. */
  readonly device?: TrainDevice | null;
  /** --checkpoint: module-scope prefixes of the blocks whose activations the backward recomputes. */
  readonly checkpoint?: readonly string[] | null;
  /**
   * Train the fused forward (compiler/passes' fuse: window attention, FPN merge, cross-attention);
   * `ptc train` sets it (false with --no-fuse). Missing (checkpoints from before fusion in
   * training, RunConfigs built by hand): the unfused graph, so such a run resumes as it ran.
   */
  readonly fuse?: boolean;
}

export interface TrainHooks {
  /** After step `step` (1-based) is logged and any checkpoint written. */
  afterStep?(step: number): void;
  /** Inside a checkpoint write, after its files exist and before it is committed. */
  beforeCheckpointCommit?(step: number): void;
}

export interface TrainContext {
  readonly definition: ModelDefinition;
  readonly run: RunConfig;
  /** A loaded checkpoint to continue from. */
  readonly resume?: Checkpoint;
  readonly executor?: Executor;
  readonly progress?: ProgressSink;
  readonly hooks?: TrainHooks;
  /** Set by a signal handler: the loop checkpoints after the current step and returns. */
  readonly interrupt?: { requested: boolean };
  /** Replaces the --data source (tests). */
  readonly source?: DataSource;
  /** This process is one rank of a data-parallel job over these collectives. */
  readonly distributed?: DistributedOptions;
  /** --device cuda on one process: the GPU to use (LOCAL_RANK; default 0). */
  readonly deviceIndex?: number;
}

export interface StepRecord {
  readonly step: number;
  readonly loss: number;
  readonly lr: number;
  readonly gradNorm: number;
  readonly clipScale: number;
  readonly applied: boolean;
  readonly optimizerStep: number;
  readonly imagesPerSec: number;
  readonly stepSeconds: number;
  readonly dataWaitMs: number;
  readonly skippedSteps: number;
  readonly consecutiveSkips: number;
  readonly skippedSamples: number;
}

export interface TrainResult {
  readonly records: readonly StepRecord[];
  /** Steps completed in all (including those before a resume). */
  readonly step: number;
  readonly optimizerStep: number;
  readonly params: ReadonlyMap<string, HostTensor>;
  readonly state: OptimizerState;
  readonly interrupted: boolean;
  readonly checkpoint: string | undefined;
  readonly skippedSteps: number;
  readonly skippedSamples: readonly SkippedSample[];
  /** Unreadable samples skipped before the resumed checkpoint (counted, not listed). */
  readonly skippedSamplesBefore: number;
  readonly imagesPerSec: number;
  readonly dataWaitMs: number;
  readonly init: InitReport | undefined;
  readonly traced: TracedModel;
  /** What fusion replaced in the trained forward; null when the run trains unfused. */
  readonly fusions: FusionCounts | null;
  readonly source: string;
}

/** A run stopped because too many steps in a row were non-finite. */
export class TrainingDiverged extends UserError {
  constructor(message: string) {
    super(message, "--max-skips");
    this.name = "TrainingDiverged";
  }
}

/** Where the step runs, for the run's header line. */
function describeEngine(engine: StepEngine, executor: Executor | undefined): string {
  if (engine instanceof DeviceEngine) return engine.device.description;
  if (engine instanceof DeviceDataParallelEngine) return engine.description;
  if (engine instanceof DistributedEngine) return `cpu, ${engine.worldSize} ranks (${engine.strategy})`;
  return executor?.name ?? "cpu";
}

export function dropoutSeed(seed: number, step: number, micro: number, accum: number): number {
  return mix32((seed ^ hashString("dropout") ^ Math.imul(step * accum + micro + 1, 0x85ebca6b)) >>> 0);
}

/** Classes the synthetic labels should use: the model's output channels. */
function outputClasses(traced: TracedModel): number {
  for (const name of ["seg", "logits"]) {
    const id = traced.graph.outputs.get(name);
    if (id !== undefined) return traced.graph.node(id).shape[1];
  }
  return 10;
}

function checkResumeTensors(resume: Checkpoint, params: readonly { name: string; shape: readonly number[] }[]): void {
  const problems: string[] = [];
  for (const p of params) {
    const t = resume.params.get(p.name);
    if (!t) problems.push(`${p.name} missing`);
    else if (t.shape.join() !== p.shape.join())
      problems.push(`${p.name} is ${formatShape(t.shape)}, the model has ${formatShape(p.shape)}`);
    else if (!resume.m.has(p.name) || !resume.v.has(p.name)) problems.push(`${p.name} has no optimizer state`);
  }
  if (problems.length > 0)
    throw new UserError(`the checkpoint does not fit this model: ${problems.slice(0, 5).join("; ")}`, resume.dir);
}

/**
 * The forward graph a run trains: the traced one, fused unless the run says otherwise. Fusion keeps
 * every parameter (same names and shapes: checkpoints of fused and unfused runs load into each
 * other) and the module scope of the blocks it rewrites (the fused nodes stay in their
 * checkpoint unit, so --checkpoint selects the same blocks).
 */
export function trainingForward(graph: Graph, fused: boolean): { graph: Graph; fusions: FusionCounts | null } {
  if (!fused) return { graph, fusions: null };
  const r = fuse(graph);
  const names = (g: Graph) =>
    g
      .params()
      .map((p) => `${String(p.attrs.name)}${formatShape(p.shape)}`)
      .sort()
      .join();
  // An invariant of the passes, not a user error: a lost parameter would change the checkpoints.
  if (names(r.graph) !== names(graph)) throw new Error("fusion changed the parameters of the training forward");
  return { graph: r.graph, fusions: r.counts };
}

/** "8 window attention, 3 FPN merges, 3 cross-attention" (or "none"). */
export function describeFusions(c: FusionCounts): string {
  const parts = [
    c.windowAttention ? `${c.windowAttention} window attention` : "",
    c.fpnMerge ? `${c.fpnMerge} FPN merge${c.fpnMerge === 1 ? "" : "s"}` : "",
    c.crossAttention ? `${c.crossAttention} cross-attention` : "",
  ].filter(Boolean);
  return parts.length ? parts.join(", ") : "none";
}

export async function train(ctx: TrainContext): Promise<TrainResult> {
  const { run, definition: def } = ctx;
  const world = ctx.distributed?.world.size ?? 1;
  const rank = ctx.distributed?.world.rank ?? 0;
  const lead = rank === 0;
  if (world > 1 && run.device) checkDeviceStrategy(run.strategy);
  if (world > 1 && !run.device && run.backend !== "cpu")
    throw new UserError(`data parallelism runs on the cpu backend only (for now), not '${run.backend}'`, "--backend");
  const executor: Executor | undefined = world === 1 ? (ctx.executor ?? executorNamed(run.backend)) : undefined;
  // Only rank 0 reports; the others stay quiet unless they fail.
  const progress = lead ? (ctx.progress ?? silentProgress) : silentProgress;
  const plain = traceModel(def, {
    config: run.config,
    task: run.task ?? undefined,
    batch: run.microBatch,
    training: true,
    imageSize: run.imageSize ?? undefined,
    computeDType: run.precision,
  });
  // Everything below (parameters, gradient graph, recompute units, inputs, the engines) derives
  // from the forward that is trained: the fused one unless the run says --no-fuse.
  const forward = trainingForward(plain.graph, run.fuse === true);
  const traced: TracedModel = { ...plain, graph: forward.graph };
  checkInputs(traced.graph, def);
  const task = dataTaskOf(traced.graph, traced.task);
  const imageNode = traced.graph.inputs().find((n) => n.attrs.name === "image");
  if (!imageNode) throw new UserError("the model has no 'image' input to feed from --data", "--data");
  const imageSize: [number, number] = [imageNode.shape[2], imageNode.shape[3]];
  const settings: OptimizerSettings = {
    weightDecay: run.weightDecay,
    clip: run.clip ?? undefined,
    recompute: run.checkpoint?.length ? recomputePredicate(traced.graph, run.checkpoint) : undefined,
  };
  checkLossOutput(traced.graph);

  // Weights and optimizer state: a checkpoint's, or fresh (optionally with --init weights).
  const resume = ctx.resume;
  const trained = adamwParams(traced.graph);
  let init: InitReport | undefined;
  let resumed: OptimizerState | undefined;
  let fresh: Map<string, HostTensor> | undefined;
  if (resume) {
    checkResumeTensors(resume, trained);
    resumed = {
      params: new Map(trained.map((p) => [p.name, resume.params.get(p.name) as HostTensor])),
      m: new Map(trained.map((p) => [p.name, resume.m.get(p.name) as HostTensor])),
      v: new Map(trained.map((p) => [p.name, resume.v.get(p.name) as HostTensor])),
      optimizerStep: resume.state.optimizerStep,
    };
  }
  if (!resume || world > 1) {
    fresh = initParams(traced.graph, run.seed);
    if (run.init && !resume) {
      init = applyInitWeights(run.init, trained, fresh);
      progress.message(
        `init: loaded ${init.loaded.length} parameters from ${init.file} (${summariseNames(init.loaded)}); ` +
          `fresh ${init.fresh.length}${init.fresh.length ? ` (${summariseNames(init.fresh)}: ${init.fresh.slice(0, 6).join(", ")}${init.fresh.length > 6 ? ", ..." : ""})` : ""}; ` +
          `unused ${init.unused.length}${init.unused.length ? ` (${summariseNames(init.unused)})` : ""}`,
      );
    }
  }
  let engine: StepEngine;
  if (ctx.distributed && world > 1 && run.device) {
    const start = resumed ?? { params: fresh as Map<string, HostTensor>, m: new Map(), v: new Map(), optimizerStep: 0 };
    engine = await DeviceDataParallelEngine.create(
      run.device,
      traced.graph,
      run.accum,
      settings,
      {
        host: ctx.distributed.world,
        strategy: checkDeviceStrategy(run.strategy),
        shardSize: run.shardSize ?? undefined,
        store: ctx.distributed.store,
        deviceIndex: ctx.distributed.localRank,
      },
      start,
    );
  } else if (ctx.distributed && world > 1) {
    const initial = new Map(fresh as Map<string, HostTensor>);
    if (resumed) for (const [k, t] of resumed.params) initial.set(k, t);
    engine = await DistributedEngine.create(traced.graph, run.accum, settings, ctx.distributed, initial, resumed);
  } else if (run.device) {
    const start = resumed ?? { params: fresh as Map<string, HostTensor>, m: new Map(), v: new Map(), optimizerStep: 0 };
    engine = await DeviceEngine.create(run.device, traced.graph, run.accum, settings, start, {
      deviceIndex: ctx.deviceIndex,
    });
  } else {
    const runner = new StepRunner(executor as Executor, traced.graph, run.accum, settings);
    engine = new LocalEngine(runner, resumed ?? runner.initialState(fresh as Map<string, HostTensor>));
  }

  const source =
    ctx.source ??
    openDataSource(run.data, { imageSize, seed: run.seed, numClasses: task === "pretrain" ? 10 : outputClasses(traced) });
  let step = resume?.state.step ?? 0;
  if (resume && (resume.state.data.length !== source.length || resume.state.data.source !== source.describe())) {
    progress.message(
      `warning: the data differs from the checkpoint's (${resume.state.data.source}); the resumed run will not repeat the original exactly`,
    );
  }
  const start = resume ? resumePosition(resume.state.data, rank, world, run.microBatch) : { position: 0, exact: true };
  if (!start.exact) {
    progress.message(
      `warning: the checkpoint's data position (${resume?.state.data.position}) does not fall on a global batch of this layout ` +
        `(${world} x ${run.microBatch}); continuing at the next one, some samples are not seen`,
    );
  }
  const loader = new DataLoader(source, {
    task,
    batch: run.microBatch,
    imageSize,
    seed: run.seed,
    workers: run.workers,
    position: start.position,
    shard: world > 1 ? { index: rank, count: world } : undefined,
  });
  loader.warmUp();
  const log = run.log && lead ? new JsonlLog(run.log) : undefined;
  if (log) {
    if (resume) log.truncateAfter(step);
    else log.clear();
  }
  if (lead) removeStaleTemps(run.ckptDir);
  const params = trained.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  const imagesPerStep = run.microBatch * run.accum * world;
  progress.message(
    `train ${traced.name} ${traced.configName}${traced.task ? ` (${traced.task})` : ""}: ${(params / 1e6).toFixed(2)}M params, ` +
      `${run.precision} on ${describeEngine(engine, executor)}; data ${source.describe()}; image ${imageSize[0]}x${imageSize[1]}; ` +
      `global batch ${imagesPerStep} = ${world} x ${run.microBatch} x ${run.accum}; ` +
      (run.checkpoint?.length ? `checkpointing ${run.checkpoint.join(",")}; ` : "") +
      (forward.fusions ? `fused: ${describeFusions(forward.fusions)}; ` : "unfused; ") +
      `lr ${run.lr} (warmup ${run.warmup}, cosine to ${run.minLr} at step ${run.steps}), wd ${run.weightDecay}${run.clip ? `, clip ${run.clip}` : ""}; ` +
      `checkpoints ${run.ckptDir}${run.ckptEvery ? ` every ${run.ckptEvery}` : " at the end"} (keep ${run.keep})` +
      (resume ? `; resuming at step ${resume.state.step} from ${resume.dir}` : ""),
  );

  const schedule: Schedule = { baseLr: run.lr, minLr: run.minLr, warmupSteps: run.warmup, totalSteps: run.steps };
  let skippedSteps = resume?.state.skipped.nonFinite ?? 0;
  let consecutive = resume?.state.skipped.consecutiveNonFinite ?? 0;
  const skippedBefore = resume?.state.skipped.samples ?? 0;
  let skippedSince = 0;
  let lastLoss: number | null = resume?.state.lastLoss ?? null;
  let lastSaved: string | undefined;
  let lastSavedStep = -1;
  let lastState: OptimizerState | undefined;
  let positions: readonly number[] = [];
  const records: StepRecord[] = [];
  let timedSeconds = 0;
  let timedSteps = 0;
  let ema: number | undefined;

  // Collective on a data-parallel job: every rank gathers the full state; rank 0 writes it.
  const save = async (): Promise<void> => {
    const state = await engine.state();
    lastState = state;
    if (lead) {
      const ckptState: CheckpointState = {
        format: CHECKPOINT_FORMAT,
        version: CHECKPOINT_VERSION,
        step,
        optimizerStep: engine.optimizerStep,
        rng: { seed: run.seed },
        data: {
          position: globalPosition(positions, run.microBatch),
          source: source.describe(),
          length: source.length,
          ...(world > 1 ? { ranks: { batch: run.microBatch, positions: [...positions] } } : {}),
        },
        skipped: { nonFinite: skippedSteps, consecutiveNonFinite: consecutive, samples: skippedBefore + skippedSince },
        run: { ...run },
        params: trained.map((p) => p.name),
        lastLoss,
        savedAt: new Date().toISOString(),
      };
      const hook = ctx.hooks?.beforeCheckpointCommit;
      lastSaved = saveCheckpoint(run.ckptDir, ckptState, state, {
        keep: run.keep,
        beforeCommit: hook ? () => hook(step) : undefined,
      });
    }
    // The others wait for the write: an interrupted job exits only once its checkpoint exists.
    await engine.barrier();
    lastSavedStep = step;
  };

  let interrupted = false;
  try {
    while (step < run.steps) {
      const t0 = performance.now();
      const wait0 = loader.waitMs;
      const lr = learningRate(schedule, step);
      const inputs: TensorMap[] = [];
      const seeds: number[] = [];
      for (let k = 0; k < run.accum; k++) {
        const batch = await loader.next();
        inputs.push(batchInputs(traced, def, batch, run.seed));
        // Global micro-batch k * world + rank: one process with accum x world micro-batches draws the same seeds.
        seeds.push(dropoutSeed(run.seed, step, k * world + rank, run.accum * world));
      }
      const r = await engine.step(inputs, seeds, lr, {
        interrupt: () => ctx.interrupt?.requested ?? false,
        skippedSamples: loader.skipped.length,
        position: loader.position,
      });
      positions = r.positions;
      skippedSince = r.skippedSamples;
      step++;
      if (r.applied) consecutive = 0;
      else {
        skippedSteps++;
        consecutive++;
      }
      if (Number.isFinite(r.loss)) lastLoss = r.loss;
      const seconds = (performance.now() - t0) / 1000;
      if (records.length > 0 || run.steps - step === 0) {
        timedSeconds += seconds;
        timedSteps++;
      }
      ema = ema === undefined ? seconds : 0.8 * ema + 0.2 * seconds;
      const rec: StepRecord = {
        step,
        loss: r.loss,
        lr,
        gradNorm: r.gradNorm,
        clipScale: r.clipScale,
        applied: r.applied,
        optimizerStep: engine.optimizerStep,
        imagesPerSec: imagesPerStep / seconds,
        stepSeconds: seconds,
        dataWaitMs: loader.waitMs - wait0,
        skippedSteps,
        consecutiveSkips: consecutive,
        skippedSamples: skippedBefore + skippedSince,
      };
      records.push(rec);
      // JSON has no NaN/Infinity: non-finite numbers are written as strings.
      log?.write(
        Object.fromEntries(
          Object.entries(rec).map(([k, v]) => [k, typeof v === "number" && !Number.isFinite(v) ? String(v) : v]),
        ),
      );
      progress.update({
        step,
        total: run.steps,
        loss: r.loss,
        lr,
        imagesPerSec: rec.imagesPerSec,
        etaSeconds: (run.steps - step) * (ema ?? seconds),
        skipped: skippedSteps,
      });
      if (!r.applied) {
        progress.message(
          `step ${step}: non-finite ${Number.isFinite(r.loss) ? `gradient (norm ${r.gradNorm})` : `loss (${r.loss})`}; update skipped (${consecutive} in a row)`,
        );
        if (consecutive > run.maxSkips) {
          throw new TrainingDiverged(
            `stopped at step ${step}: ${consecutive} steps in a row had a non-finite loss or gradient (limit ${run.maxSkips}); ` +
              `lower --lr, set --clip, or use --precision f32; the last checkpoint ${lastSaved ?? "(none)"} holds the last good state`,
          );
        }
      }
      if ((run.ckptEvery > 0 && step % run.ckptEvery === 0) || step === run.steps) await save();
      ctx.hooks?.afterStep?.(step);
      // Yield to the event loop once per step: signal handlers (Ctrl-C) and worker messages run
      // only there, and a step whose data is already decoded never leaves the microtask queue.
      await new Promise((resolve) => setImmediate(resolve));
      // One process stops on its own flag; the ranks of a job on the flag they all shared in the step.
      const stop = world === 1 ? (ctx.interrupt?.requested ?? false) : r.interrupt;
      if (stop && step < run.steps) {
        interrupted = true;
        if (lastSavedStep !== step) await save();
        break;
      }
    }
  } finally {
    progress.done();
    await loader.close();
  }
  const state = world === 1 ? await engine.state() : (lastState ?? (await engine.state()));
  return {
    records,
    step,
    optimizerStep: engine.optimizerStep,
    params: state.params,
    state,
    interrupted,
    checkpoint: lastSaved,
    skippedSteps,
    skippedSamples: loader.skipped,
    skippedSamplesBefore: skippedBefore,
    imagesPerSec: timedSteps > 0 ? (imagesPerStep * timedSteps) / timedSeconds : 0,
    dataWaitMs: loader.waitMs,
    init,
    traced,
    fusions: forward.fusions,
    source: source.describe(),
  };
}
