// `ptc train <model.ts>`: the command-line face of train(). Flags become a RunConfig (or, with
// --resume, the checkpoint's RunConfig with the few flags a resumed run may change); SIGINT and
// SIGTERM checkpoint after the current step and exit 130.
//
// Three ways to run: one process; `--nproc-per-node G` (this process launches G workers, see
// launch.ts); or as a worker, when torchrun-style (RANK, WORLD_SIZE, ...) or Slurm (SLURM_PROCID,
// SLURM_NTASKS, ...) variables say this process is one rank of a job.

import { existsSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import chalk from "chalk";
import type { Command } from "commander";
import { traceModel } from "../../compiler/dsl/model.ts";
import { loadModel, parseImageSize, parseNumber, parsePositiveInt } from "../../compiler/frontend/index.ts";
import { isUserError, UserError } from "../../compiler/ir/index.ts";
import { DEFAULT_MASTER_PORT, type LaunchEnv, readLaunchEnv } from "../cuda/launch-env.ts";
import { CollectiveError } from "../parallel/collectives.ts";
import { CpuCollectives } from "../parallel/cpu-collectives.ts";
import { DATA_PARALLEL_STRATEGIES, type DataParallelStrategy } from "../parallel/data-parallel.ts";
import { listCheckpoints, loadCheckpoint, readCheckpointState, resolveCheckpoint } from "./checkpoint.ts";
import { checkDeviceStrategy, DEVICE_STRATEGIES } from "./device-parallel.ts";
import { checkTrainDevice, type TrainDevice } from "./device-step.ts";
import { launchTraining } from "./launch.ts";
import { formatDuration, stderrProgress } from "./progress.ts";
import { parseCheckpointFlag, recomputePredicate } from "./recompute.ts";
import { defaultWarmup, FINETUNE_LR, PAPER_MIN_LR } from "./schedule.ts";
import { describeFusions, type RunConfig, type TrainHooks, TrainingDiverged, train, trainingForward } from "./trainer.ts";

/** Default base LR of a run from scratch (the paper gives none for pre-training; SimMIM's Swin recipe is of this order). */
export const PRETRAIN_LR = 5e-4;

interface TrainFlags {
  config?: string;
  task?: string;
  data: string;
  steps: number;
  microBatch: number;
  accum: number;
  lr?: number;
  minLr: number;
  warmup?: number;
  weightDecay: number;
  clip?: number;
  precision: string;
  backend: string;
  device?: string;
  ckptDir?: string;
  ckptEvery: number;
  keep: number;
  resume?: string;
  init?: string;
  log?: string;
  seed: number;
  imageSize?: [number, number];
  maxSkips: number;
  workers?: number;
  typecheck: boolean;
  nprocPerNode?: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  strategy: string;
  shardSize?: number;
  collectiveTimeout: number;
  checkpoint?: string[];
  /** false with --no-fuse. */
  fuse: boolean;
}

function parseCount(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new UserError(`expected a whole number >= 0, got '${v}'`, flag);
    return n;
  };
}

function positiveNumber(flag: string) {
  const parse = parseNumber(flag);
  return (v: string): number => {
    const n = parse(v);
    if (n <= 0) throw new UserError(`expected a number > 0, got '${v}'`, flag);
    return n;
  };
}

function nonNegativeNumber(flag: string) {
  const parse = parseNumber(flag);
  return (v: string): number => {
    const n = parse(v);
    if (n < 0) throw new UserError(`expected a number >= 0, got '${v}'`, flag);
    return n;
  };
}

/**
 * Flags a resumed run may change; everything else comes from the checkpoint. The world size, the
 * strategy and --accum may change too, as long as the global batch stays (see resumedRun).
 */
const RESUMABLE = new Set([
  "steps",
  "ckptDir",
  "ckptEvery",
  "keep",
  "log",
  "maxSkips",
  "workers",
  "strategy",
  "shardSize",
  "device",
  // The same gradients with or without: only the memory and time of a step change.
  "checkpoint",
]);
/** RunConfig keys by flag name, for the resume check. */
const FLAG_OF: Record<string, string> = {
  config: "--config",
  task: "--task",
  data: "--data",
  microBatch: "--micro-batch",
  lr: "--lr",
  minLr: "--min-lr",
  warmup: "--warmup",
  weightDecay: "--weight-decay",
  clip: "--clip",
  precision: "--precision",
  backend: "--backend",
  seed: "--seed",
  imageSize: "--image-size",
  init: "--init",
  // Fused and unfused steps round differently: a resumed run keeps its choice.
  fuse: "--no-fuse",
};

/** Where this process sits in a job (world 1 for a single process). */
interface Placement {
  readonly world: number;
  readonly localWorld: number;
}

function strategyOf(flags: TrainFlags): DataParallelStrategy {
  if (!(DATA_PARALLEL_STRATEGIES as readonly string[]).includes(flags.strategy))
    throw new UserError(`expected one of ${DATA_PARALLEL_STRATEGIES.join(", ")}, got '${flags.strategy}'`, "--strategy");
  return flags.strategy as DataParallelStrategy;
}

function checkShardSize(run: RunConfig): void {
  if (run.world > 1 && run.strategy === "hsdp" && run.shardSize !== null && run.world % run.shardSize !== 0)
    throw new UserError(`the shard size ${run.shardSize} must divide the world size ${run.world}`, "--shard-size");
}

function freshRun(
  file: string,
  flags: TrainFlags,
  defName: string,
  defaultConfig: string,
  workers: number,
  placement: Placement,
): RunConfig {
  const config = flags.config ?? defaultConfig;
  if (flags.init && !existsSync(flags.init)) throw new UserError("no such checkpoint or weights file", flags.init);
  const lr = flags.lr ?? (flags.init ? FINETUNE_LR : PRETRAIN_LR);
  if (flags.minLr > lr) throw new UserError(`the minimum LR ${flags.minLr} is above the base LR ${lr}`, "--min-lr");
  const ckptDir = flags.ckptDir ?? path.join("dist", "runs", `${defName}-${config}${flags.task ? `-${flags.task}` : ""}`);
  return {
    model: file,
    config,
    task: flags.task ?? null,
    data: flags.data,
    steps: flags.steps,
    microBatch: flags.microBatch,
    accum: flags.accum,
    lr,
    minLr: flags.minLr,
    warmup: flags.warmup ?? defaultWarmup(flags.steps),
    weightDecay: flags.weightDecay,
    clip: flags.clip ?? null,
    precision: flags.precision as "f32" | "bf16",
    backend: flags.backend,
    device: (flags.device as TrainDevice | undefined) ?? null,
    seed: flags.seed,
    imageSize: flags.imageSize ?? null,
    ckptDir,
    ckptEvery: flags.ckptEvery,
    keep: flags.keep,
    log: flags.log ?? path.join(ckptDir, "train.jsonl"),
    maxSkips: flags.maxSkips,
    workers,
    init: flags.init ?? null,
    world: placement.world,
    strategy: strategyOf(flags),
    shardSize: flags.shardSize ?? (placement.world > 1 ? placement.localWorld : null),
    checkpoint: flags.checkpoint ?? null,
    fuse: flags.fuse,
  };
}

/** The checkpoint's run, with the flags a resumed run may change; other flags must agree. */
function resumedRun(
  stored: RunConfig,
  flags: TrainFlags,
  given: (key: keyof TrainFlags) => boolean,
  resumeDir: string,
  workers: number,
  placement: Placement,
): RunConfig {
  // Checkpoints from before fusion in training have no `fuse`: they trained the unfused graph.
  const saved: RunConfig = { ...stored, fuse: stored.fuse ?? false };
  for (const [key, flag] of Object.entries(FLAG_OF)) {
    if (!given(key as keyof TrainFlags)) continue;
    const mine = JSON.stringify((flags as unknown as Record<string, unknown>)[key] ?? null);
    const theirs = JSON.stringify((saved as unknown as Record<string, unknown>)[key] ?? null);
    if (mine !== theirs) {
      throw new UserError(
        `the checkpoint's run has ${theirs}, this command ${mine}; a resumed run keeps its settings (drop the flag, or start a new run with --init)`,
        flag,
      );
    }
  }
  // Checkpoints from before data parallelism have no world, strategy or shard size.
  const run: Record<string, unknown> = {
    ...saved,
    strategy: saved.strategy ?? "ddp",
    shardSize: saved.shardSize ?? null,
    world: placement.world,
    workers,
  };
  for (const key of RESUMABLE) if (given(key as keyof TrainFlags)) run[key] = (flags as unknown as Record<string, unknown>)[key];
  if (given("strategy")) strategyOf(flags);
  if (!given("shardSize") && placement.world !== (saved.world ?? 1))
    run.shardSize = placement.world > 1 ? placement.localWorld : null;
  // The global batch (world x micro-batch x accum) is the run's: another world size takes another accum.
  const global = (saved.world ?? 1) * saved.microBatch * saved.accum;
  const perStep = placement.world * saved.microBatch;
  if (given("accum")) {
    if (perStep * flags.accum !== global)
      throw new UserError(
        `the checkpoint's global batch is ${global}; ${placement.world} rank(s) x micro-batch ${saved.microBatch} x ${flags.accum} is ${perStep * flags.accum}`,
        "--accum",
      );
    run.accum = flags.accum;
  } else if (global % perStep !== 0) {
    throw new UserError(
      `the checkpoint's global batch ${global} is not a multiple of ${placement.world} rank(s) x micro-batch ${saved.microBatch}; resume with a world size that divides it`,
      resumeDir,
    );
  } else run.accum = global / perStep;
  if (!given("ckptDir")) run.ckptDir = path.dirname(resumeDir);
  if (!given("log") && saved.log === path.join(saved.ckptDir, "train.jsonl"))
    run.log = path.join(run.ckptDir as string, "train.jsonl");
  return run as unknown as RunConfig;
}

/** Test-only hooks (PTC_TEST_PAUSE_AFTER_STEP / PTC_TEST_PAUSE_BEFORE_COMMIT = step): block until killed. */
function testHooks(): TrainHooks {
  const pause = (what: string) => {
    process.stderr.write(`test hook: paused ${what}\n`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  };
  const after = Number(process.env.PTC_TEST_PAUSE_AFTER_STEP ?? Number.NaN);
  const commit = Number(process.env.PTC_TEST_PAUSE_BEFORE_COMMIT ?? Number.NaN);
  return {
    afterStep: Number.isFinite(after) ? (s) => s === after && pause(`after step ${s}`) : undefined,
    beforeCheckpointCommit: Number.isFinite(commit)
      ? (s) => s === commit && pause(`before committing checkpoint ${s}`)
      : undefined,
  };
}

/** The run this command describes (fresh or resumed), checked; the same on the launcher and every rank. */
function prepareRun(
  file: string,
  flags: TrainFlags,
  def: { name: string; defaultConfig: string },
  given: (key: keyof TrainFlags) => boolean,
  workers: number,
  placement: Placement,
  checkFolder: boolean,
  loadTensors = true,
): { run: RunConfig; resume: ReturnType<typeof loadCheckpoint> | undefined } {
  let run: RunConfig;
  let resume: ReturnType<typeof loadCheckpoint> | undefined;
  if (flags.resume) {
    const dir = resolveCheckpoint(flags.resume);
    // The launcher only checks the run: the state is enough, the tensors are the ranks' to read.
    resume = loadTensors
      ? loadCheckpoint(dir)
      : { dir, state: readCheckpointState(dir), params: new Map(), m: new Map(), v: new Map() };
    run = resumedRun(resume.state.run as unknown as RunConfig, flags, given, dir, workers, placement);
    if (path.resolve(run.model) !== path.resolve(file)) {
      throw new UserError(`the checkpoint was trained from ${run.model}, not ${file}`, flags.resume);
    }
    if (resume.state.step >= run.steps) {
      throw new UserError(
        `the checkpoint is at step ${resume.state.step} of ${run.steps}: nothing to do (raise --steps)`,
        "--steps",
      );
    }
  } else {
    run = freshRun(file, flags, def.name, def.defaultConfig, workers, placement);
    const existing = checkFolder ? listCheckpoints(run.ckptDir) : [];
    if (existing.length > 0) {
      // Mixing two runs' checkpoints would let retention delete one of them; never overwrite silently.
      throw new UserError(
        `already holds a run's checkpoints (${existing[existing.length - 1].name}): continue it with --resume ${run.ckptDir}, or pick another --ckpt-dir`,
        run.ckptDir,
      );
    }
  }
  checkShardSize(run);
  if (run.world > 1 && run.device) checkDeviceStrategy(run.strategy);
  return { run, resume };
}

/** Test-only fault (PTC_TEST_FAIL_RANK=R and PTC_TEST_FAIL_STEP=S): rank R throws after step S. */
function faultHook(rank: number): ((step: number) => void) | undefined {
  const r = Number(process.env.PTC_TEST_FAIL_RANK ?? Number.NaN);
  const at = Number(process.env.PTC_TEST_FAIL_STEP ?? Number.NaN);
  if (r !== rank || !Number.isFinite(at)) return undefined;
  return (step) => {
    if (step === at) throw new UserError(`test hook: injected failure after step ${step}`);
  };
}

/** How a rank of a job fails: one line prefixed with its rank, then exit 1. */
function failRank(rank: number, e: unknown): void {
  // A diverged run stops on every rank at once (the decision is shared): rank 0 says why.
  if (!(e instanceof TrainingDiverged && rank !== 0)) {
    const text = isUserError(e) ? e.line : ((e as Error)?.stack ?? String(e));
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++)
      process.stderr.write(`[rank ${rank}] ${i === 0 ? `${chalk.red("error:")} ` : ""}${lines[i]}\n`);
  }
  // Failing because another rank went away: let that rank's exit reach the launcher first, so the
  // job is reported as that rank's failure (the launcher stops this one meanwhile).
  if (e instanceof CollectiveError && e.peer !== undefined && e.peer !== rank) setTimeout(() => process.exit(1), 1000);
  else process.exit(1);
}

async function trainAction(file: string, flags: TrainFlags, cmd: Command): Promise<void> {
  if (flags.precision !== "f32" && flags.precision !== "bf16") {
    throw new UserError(`expected f32 or bf16, got '${flags.precision}'`, "--precision");
  }
  checkTrainDevice(flags.device);
  if (flags.resume && flags.init)
    throw new UserError("give --resume (continue a run) or --init (start from its weights), not both", "--init");
  strategyOf(flags);
  const given = (key: keyof TrainFlags) => cmd.getOptionValueSource(key) === "cli";
  const workers =
    flags.workers ??
    (flags.data === "synthetic" ? 0 : Math.max(1, Math.min(4, (await import("node:os")).availableParallelism() - 1)));

  if (flags.nprocPerNode !== undefined) {
    // The launcher: check the model and the run once, here, then start this node's ranks.
    const def = await loadModel(file, { typecheck: flags.typecheck });
    const world = flags.nprocPerNode * flags.nnodes;
    if (flags.nodeRank >= flags.nnodes)
      throw new UserError(`expected a node rank from 0 to ${flags.nnodes - 1}, got ${flags.nodeRank}`, "--node-rank");
    const { run } = prepareRun(
      file,
      flags,
      def,
      given,
      workers,
      { world, localWorld: flags.nprocPerNode },
      flags.nodeRank === 0,
      false,
    );
    // A --checkpoint that selects no block is one error here, not one per rank.
    if (run.checkpoint?.length) {
      const traced = traceModel(def, {
        config: run.config,
        task: run.task ?? undefined,
        batch: 1,
        training: true,
        imageSize: run.imageSize ?? undefined,
      });
      recomputePredicate(trainingForward(traced.graph, run.fuse === true).graph, run.checkpoint);
    }
    const args = process.argv.slice(2);
    const code = await launchTraining(flags as Required<TrainFlags>, flags.typecheck ? [...args, "--no-typecheck"] : args);
    if (code !== 0) process.exitCode = code;
    return;
  }

  const env: LaunchEnv = readLaunchEnv();
  const rank = env.rank;
  const distributed = env.worldSize > 1;
  const interrupt = { requested: false };
  const onSignal = (sig: string) => {
    if (interrupt.requested) process.exit(130);
    interrupt.requested = true;
    // A job's ranks stay quiet: its launcher says it (and stops the job with SIGTERM when a rank fails).
    if (!distributed) process.stderr.write(`\n${sig}: checkpointing after the current step (again to abort)\n`);
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  try {
    const def = await loadModel(file, { typecheck: flags.typecheck });
    const { run, resume } = prepareRun(
      file,
      flags,
      def,
      given,
      workers,
      { world: env.worldSize, localWorld: env.localWorldSize },
      rank === 0,
    );
    const t0 = performance.now();
    let world: CpuCollectives | undefined;
    if (distributed) {
      // One node: loopback. Several: this host's name, unless PTC_NODE_ADDR says which address the others reach.
      const multiNode = env.worldSize > env.localWorldSize;
      world = await CpuCollectives.fromEnv(env, {
        timeoutMs: flags.collectiveTimeout * 1000,
        host: process.env.PTC_NODE_ADDR || (multiNode ? hostname() : "127.0.0.1"),
      });
    }
    const hooks = testHooks();
    const fault = faultHook(rank);
    const afterStep = hooks.afterStep;
    const r = await train({
      definition: def,
      run,
      resume,
      progress: stderrProgress(),
      interrupt,
      hooks: {
        ...hooks,
        afterStep: (s) => {
          fault?.(s);
          afterStep?.(s);
        },
      },
      distributed: world
        ? {
            world,
            strategy: run.strategy,
            shardSize: run.shardSize ?? undefined,
            localRank: env.localRank,
            store: world.rendezvousStore,
          }
        : undefined,
      deviceIndex: env.localRank,
    });
    await world?.close();
    if (rank === 0) {
      const losses = r.records.map((x) => x.loss).filter(Number.isFinite);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
      const first = mean(losses.slice(0, 10));
      const last = mean(losses.slice(-10));
      const skippedNow = r.records.length ? r.records[r.records.length - 1].skippedSamples : r.skippedSamplesBefore;
      const lines = [
        `${r.interrupted ? "interrupted" : "trained"} ${r.records.length} steps (to step ${r.step}/${run.steps}) in ${formatDuration((performance.now() - t0) / 1000)}: ` +
          `loss ${first.toFixed(4)} -> ${last.toFixed(4)} (mean of the first and last ${Math.min(10, losses.length)} steps), ` +
          `${r.imagesPerSec.toFixed(2)} images/s, data wait ${(r.dataWaitMs / 1000).toFixed(1)} s; ` +
          (r.fusions ? `fused: ${describeFusions(r.fusions)}` : "unfused"),
        `skipped ${r.skippedSteps} non-finite step(s); ${skippedNow} unreadable image(s)` +
          (r.skippedSamples.length
            ? `: ${r.skippedSamples
                .slice(0, 10)
                .map((s) => `${s.key} (${s.reason})`)
                .join(", ")}${r.skippedSamples.length > 10 ? ", ..." : ""}${distributed ? " (rank 0's)" : ""}`
            : ""),
        `checkpoint ${r.checkpoint ?? "(none)"}; log ${run.log ?? "(none)"}`,
      ];
      for (const l of lines) process.stderr.write(`${l}\n`);
    }
    if (r.interrupted) process.exitCode = 130;
  } catch (e) {
    if (!distributed) throw e;
    failRank(rank, e);
  }
}

export function registerTrainCommand(program: Command): void {
  program
    .command("train")
    .description("train a model: AdamW, warmup + cosine LR, accumulation, checkpoints, exact resume, data parallel")
    .argument("<model.ts>", "model file that default-exports defineModel({...})")
    .option("-c, --config <name>", "model config (default: the model's defaultConfig)")
    .option("--task <name>", "task to train: pretrain (SimMIM), seg, classify (default: the config's)")
    .option(
      "--data <src>",
      "synthetic | image folder | ADE20K or Cityscapes folder | .tar shards (folder, a-{000..009}.tar, a,b) | list file",
      "synthetic",
    )
    .option("--steps <n>", "optimizer steps", parsePositiveInt("--steps"), 100)
    .option("-b, --micro-batch <n>", "samples per micro-batch (per rank)", parsePositiveInt("--micro-batch"), 2)
    .option(
      "--accum <k>",
      "micro-batches accumulated per step (global batch = world x micro-batch x accum)",
      parsePositiveInt("--accum"),
      1,
    )
    .option(
      "--lr <x>",
      `peak learning rate (default ${PRETRAIN_LR}; ${FINETUNE_LR} with --init, as the paper fine-tunes)`,
      positiveNumber("--lr"),
    )
    .option("--min-lr <x>", "learning rate at the end of the cosine decay", nonNegativeNumber("--min-lr"), PAPER_MIN_LR)
    .option("--warmup <n>", "linear warmup steps (default: 10,000, at most a tenth of --steps)", parseCount("--warmup"))
    .option(
      "--weight-decay <x>",
      "decoupled weight decay (none on norms, biases, position tables, logit scales, tokens)",
      nonNegativeNumber("--weight-decay"),
      0.05,
    )
    .option("--clip <x>", "clip the global gradient norm to this", positiveNumber("--clip"))
    .option("--precision <p>", "f32, or bf16 compute with f32 master weights and optimizer state", "f32")
    .option("--backend <name>", "backend that runs the step graphs", "cpu")
    .option(
      "--device <name>",
      "the whole step on a device, weights resident there: cuda | ptx-emu (default: --backend); each rank uses GPU LOCAL_RANK",
    )
    .option(
      "--checkpoint <units>",
      "activation checkpointing: recompute these blocks' forward in the backward (module paths, e.g. stages.2,stages.3; all)",
      parseCheckpointFlag,
    )
    .option(
      "--no-fuse",
      "train the unfused graph (default: fused window attention, FPN merge and cross-attention, as ptc build/run)",
    )
    .option("--ckpt-dir <dir>", "checkpoint folder (default dist/runs/<model>-<config>[-<task>])")
    .option("--ckpt-every <n>", "checkpoint every n steps (0: only at the end and on Ctrl-C)", parseCount("--ckpt-every"), 1000)
    .option("--keep <n>", "checkpoints to keep", parsePositiveInt("--keep"), 3)
    .option("--resume <dir>", "continue a run exactly from a checkpoint (folder or its step-N subfolder)")
    .option("--init <ckpt>", "start from a checkpoint's weights (fine-tuning: matching parameters load, a new head starts fresh)")
    .option("--log <file.jsonl>", "JSON line per step (default <ckpt-dir>/train.jsonl)")
    .option("--seed <n>", "seed of initialisation, data order, augmentation, masks and dropout", parseCount("--seed"), 0)
    .option("--image-size <HxW>", "training image size (default: the config's)", parseImageSize)
    .option("--max-skips <n>", "stop after this many non-finite steps in a row", parseCount("--max-skips"), 10)
    .option("--workers <n>", "data decoding threads (0: decode on the main thread)", parseCount("--workers"))
    .option("--no-typecheck", "skip the model's TypeScript type check")
    .option(
      "--nproc-per-node <g>",
      "launch g worker processes on this node (ranks of a data-parallel job)",
      parsePositiveInt("--nproc-per-node"),
    )
    .option("--nnodes <n>", "nodes in the job (with --nproc-per-node)", parsePositiveInt("--nnodes"), 1)
    .option("--node-rank <r>", "this node's index, 0..nnodes-1 (with --nproc-per-node)", parseCount("--node-rank"), 0)
    .option("--master-addr <addr>", "address of rank 0's node (with --nproc-per-node)", "127.0.0.1")
    .option("--master-port <port>", "port of rank 0's rendezvous store (with --nproc-per-node)", parsePort, DEFAULT_MASTER_PORT)
    .option(
      "--strategy <s>",
      `data-parallel strategy: ${DATA_PARALLEL_STRATEGIES.join(", ")} (with --device: ${DEVICE_STRATEGIES.join(", ")})`,
      "ddp",
    )
    .option("--shard-size <s>", "hsdp: ranks per shard group (default: the ranks of one node)", parsePositiveInt("--shard-size"))
    .option(
      "--collective-timeout <s>",
      "seconds a rank waits for another in a collective before failing",
      positiveNumber("--collective-timeout"),
      600,
    )
    .addHelpText(
      "after",
      `
Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and exits with code 130;
--resume <ckpt-dir> then continues with the same losses and bit-identical weights.

Data parallel: --nproc-per-node G starts G ranks here (torchrun's variables RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); a process started with those variables
(torchrun) or by srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) joins as one rank. Global batch =
ranks x micro-batch x accum; rank 0 logs and writes checkpoints (full tensors: resume with any
world size or strategy). With --device each rank trains on its own device (GPU LOCAL_RANK) and the
gradients are reduced over NCCL (--strategy ddp, zero1, zero2, zero3 or hsdp);
--device ptx-emu stages the collectives through the host (a test path).

Activation checkpointing: --checkpoint stages.2,stages.3 recomputes those blocks' forward during
the backward instead of keeping their activations (same gradients, less memory, one more forward
of those blocks); --checkpoint all does it for every block.

Fusion: the step trains the fused forward (window attention, FPN merge, cross-attention: one op
each, with their own gradients), as ptc build and ptc run; --no-fuse trains the graph as traced.
A resumed run keeps the choice its checkpoint was made with (older checkpoints: unfused).

Examples:
  ptc train model/perceptnet.ts --config xxs --steps 200                 SimMIM pre-training on synthetic data
  ptc train model/perceptnet.ts --config xxs --nproc-per-node 2 --strategy zero2
  ptc train model/perceptnet.ts --config s --device cuda --nproc-per-node 8 --strategy zero1 --checkpoint stages.2
  ptc train model/perceptnet.ts --config xxs --task seg --data ADEChallengeData2016 --init dist/runs/perceptnet-xxs
  ptc train model/perceptnet.ts --resume dist/runs/perceptnet-xxs`,
    )
    .action(trainAction);
}

function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new UserError(`expected a port from 1 to 65535, got '${v}'`, "--master-port");
  return n;
}
