// `ptc train <model.ts>`: the command-line face of train(). Flags become a RunConfig (or, with
// --resume, the checkpoint's RunConfig with the few flags a resumed run may change); SIGINT and
// SIGTERM checkpoint after the current step and exit 130.

import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { loadModel, parseImageSize, parseNumber, parsePositiveInt } from "../../compiler/frontend/index.ts";
import { UserError } from "../../compiler/ir/index.ts";
import { listCheckpoints, loadCheckpoint, resolveCheckpoint } from "./checkpoint.ts";
import { formatDuration, stderrProgress } from "./progress.ts";
import { defaultWarmup, FINETUNE_LR, PAPER_MIN_LR } from "./schedule.ts";
import { type RunConfig, type TrainHooks, train } from "./trainer.ts";

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

/** Flags a resumed run may change; everything else comes from the checkpoint. */
const RESUMABLE = new Set(["steps", "ckptDir", "ckptEvery", "keep", "log", "maxSkips", "workers"]);
/** RunConfig keys by flag name, for the resume check. */
const FLAG_OF: Record<string, string> = {
  config: "--config",
  task: "--task",
  data: "--data",
  microBatch: "--micro-batch",
  accum: "--accum",
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
};

function freshRun(file: string, flags: TrainFlags, defName: string, defaultConfig: string, workers: number): RunConfig {
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
    seed: flags.seed,
    imageSize: flags.imageSize ?? null,
    ckptDir,
    ckptEvery: flags.ckptEvery,
    keep: flags.keep,
    log: flags.log ?? path.join(ckptDir, "train.jsonl"),
    maxSkips: flags.maxSkips,
    workers,
    init: flags.init ?? null,
  };
}

/** The checkpoint's run, with the flags a resumed run may change; other flags must agree. */
function resumedRun(
  saved: RunConfig,
  flags: TrainFlags,
  given: (key: keyof TrainFlags) => boolean,
  resumeDir: string,
  workers: number,
): RunConfig {
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
  const run: Record<string, unknown> = { ...saved, workers };
  for (const key of RESUMABLE) if (given(key as keyof TrainFlags)) run[key] = (flags as unknown as Record<string, unknown>)[key];
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

export function registerTrainCommand(program: Command): void {
  program
    .command("train")
    .description("train a model: AdamW, warmup + cosine LR, accumulation, checkpoints, exact resume")
    .argument("<model.ts>", "model file that default-exports defineModel({...})")
    .option("-c, --config <name>", "model config (default: the model's defaultConfig)")
    .option("--task <name>", "task to train: pretrain (SimMIM), seg, classify (default: the config's)")
    .option(
      "--data <src>",
      "synthetic | image folder | ADE20K or Cityscapes folder | .tar shards (folder, a-{000..009}.tar, a,b) | list file",
      "synthetic",
    )
    .option("--steps <n>", "optimizer steps", parsePositiveInt("--steps"), 100)
    .option("-b, --micro-batch <n>", "samples per micro-batch (per device)", parsePositiveInt("--micro-batch"), 2)
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
    .addHelpText(
      "after",
      `
Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and exits with code 130;
--resume <ckpt-dir> then continues with the same losses and bit-identical weights.

Examples:
  ptc train model/perceptnet.ts --config xxs --steps 200                 SimMIM pre-training on synthetic data
  ptc train model/perceptnet.ts --config xxs --task seg --data ADEChallengeData2016 --init dist/runs/perceptnet-xxs
  ptc train model/perceptnet.ts --resume dist/runs/perceptnet-xxs`,
    )
    .action(async (file: string, flags: TrainFlags, cmd: Command) => {
      if (flags.precision !== "f32" && flags.precision !== "bf16") {
        throw new UserError(`expected f32 or bf16, got '${flags.precision}'`, "--precision");
      }
      if (flags.resume && flags.init)
        throw new UserError("give --resume (continue a run) or --init (start from its weights), not both", "--init");
      const given = (key: keyof TrainFlags) => cmd.getOptionValueSource(key) === "cli";
      const def = await loadModel(file, { typecheck: flags.typecheck });
      const workers =
        flags.workers ??
        (flags.data === "synthetic" ? 0 : Math.max(1, Math.min(4, (await import("node:os")).availableParallelism() - 1)));
      let run: RunConfig;
      let resume: ReturnType<typeof loadCheckpoint> | undefined;
      if (flags.resume) {
        const dir = resolveCheckpoint(flags.resume);
        resume = loadCheckpoint(dir);
        run = resumedRun(resume.state.run as unknown as RunConfig, flags, given, dir, workers);
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
        run = freshRun(file, flags, def.name, def.defaultConfig, workers);
        const existing = listCheckpoints(run.ckptDir);
        if (existing.length > 0) {
          // Mixing two runs' checkpoints would let retention delete one of them; never overwrite silently.
          throw new UserError(
            `already holds a run's checkpoints (${existing[existing.length - 1].name}): continue it with --resume ${run.ckptDir}, or pick another --ckpt-dir`,
            run.ckptDir,
          );
        }
      }
      const interrupt = { requested: false };
      const onSignal = (sig: string) => {
        if (interrupt.requested) process.exit(130);
        interrupt.requested = true;
        process.stderr.write(`\n${sig}: checkpointing after the current step (again to abort)\n`);
      };
      process.on("SIGINT", () => onSignal("SIGINT"));
      process.on("SIGTERM", () => onSignal("SIGTERM"));
      const t0 = performance.now();
      const progress = stderrProgress();
      const r = await train({ definition: def, run, resume, progress, interrupt, hooks: testHooks() });
      const losses = r.records.map((x) => x.loss).filter(Number.isFinite);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
      const first = mean(losses.slice(0, 10));
      const last = mean(losses.slice(-10));
      const lines = [
        `${r.interrupted ? "interrupted" : "trained"} ${r.records.length} steps (to step ${r.step}/${run.steps}) in ${formatDuration((performance.now() - t0) / 1000)}: ` +
          `loss ${first.toFixed(4)} -> ${last.toFixed(4)} (mean of the first and last ${Math.min(10, losses.length)} steps), ` +
          `${r.imagesPerSec.toFixed(2)} images/s, data wait ${(r.dataWaitMs / 1000).toFixed(1)} s`,
        `skipped ${r.skippedSteps} non-finite step(s); ${r.skippedSamplesBefore + r.skippedSamples.length} unreadable image(s)` +
          (r.skippedSamples.length
            ? `: ${r.skippedSamples
                .slice(0, 10)
                .map((s) => `${s.key} (${s.reason})`)
                .join(", ")}${r.skippedSamples.length > 10 ? ", ..." : ""}`
            : ""),
        `checkpoint ${r.checkpoint ?? "(none)"}; log ${run.log ?? "(none)"}`,
      ];
      for (const l of lines) process.stderr.write(`${l}\n`);
      if (r.interrupted) process.exitCode = 130;
    });
}
