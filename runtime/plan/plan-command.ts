// `ptc plan <model.ts>`: memory per GPU, step time and run cost of a distributed training job.

import chalk from "chalk";
import type { Command } from "commander";
import { build } from "../../compiler/frontend/build.ts";
import { parseImageSize, parseNumber, parsePositiveInt } from "../../compiler/frontend/flags.ts";
import { formatBytes, formatCount } from "../../compiler/frontend/format.ts";
import { UserError } from "../../compiler/ir/index.ts";
import { gpuSpec } from "./hardware.ts";
import { type Plan, plan } from "./plan.ts";
import { profileGraph } from "./profile.ts";
import { STRATEGIES, type Strategy } from "./strategies.ts";

interface PlanFlags {
  config?: string;
  task?: string;
  gpus: number;
  gpu: string;
  nodes?: number;
  globalBatch: number;
  accum: number;
  imageSize?: [number, number];
  strategy: string;
  checkpointing: string;
  mfu: number;
  images?: number;
  epochs?: number;
  datasetSize: number;
  days?: number;
  json?: boolean;
}

function fraction(flag: string) {
  return (v: string) => {
    const x = parseNumber(flag)(v);
    if (!(x > 0 && x <= 1)) throw new UserError(`expected a fraction in (0, 1], got '${v}'`, flag);
    return x;
  };
}

export function registerPlanCommand(program: Command): void {
  program
    .command("plan")
    .description("plan a distributed training run: memory per GPU, step time, images/s and GPU-hours per strategy")
    .argument("<model.ts>", "model file")
    .option("-c, --config <name>", "model config")
    .option("--task <name>", "model task (default: the model's)")
    .requiredOption("--gpus <n>", "total GPUs", parsePositiveInt("--gpus"))
    .option("--gpu <type>", "a100-80gb | h100-80gb | h200", "a100-80gb")
    .option("--nodes <k>", "nodes (default: GPUs / 8)", parsePositiveInt("--nodes"))
    .option("--global-batch <b>", "images per optimizer step (paper: 2048)", parsePositiveInt("--global-batch"), 2048)
    .option("--accum <a>", "gradient accumulation steps (paper: 4)", parsePositiveInt("--accum"), 4)
    .option("--image-size <HxW>", "training image size (default: the config's)", parseImageSize)
    .option("--strategy <s>", `auto | ${STRATEGIES.join(" | ")}`, "auto")
    .option("--checkpointing <c>", "activation checkpointing per block: auto | on | off", "auto")
    .option("--mfu <x>", "model FLOP utilisation to assume", fraction("--mfu"), 0.45)
    .option("--images <n>", "images to train on (for time and GPU-hours)", parseNumber("--images"))
    .option("--epochs <e>", "epochs over --dataset-size images", parseNumber("--epochs"))
    .option("--dataset-size <n>", "images per epoch (paper: 300M)", parseNumber("--dataset-size"), 300e6)
    .option("--days <d>", "a wall-clock budget to cost: GPU-hours and images it buys", parseNumber("--days"))
    .option("--json", "print the plan as one JSON object")
    .action(async (file: string, f: PlanFlags) => {
      if (f.strategy !== "auto" && !STRATEGIES.includes(f.strategy as Strategy)) {
        throw new UserError(`unknown strategy '${f.strategy}' (auto, ${STRATEGIES.join(", ")})`, "--strategy");
      }
      if (!["auto", "on", "off"].includes(f.checkpointing)) throw new UserError(`expected auto, on or off`, "--checkpointing");
      const gpu = gpuSpec(f.gpu);
      const built = await build(file, { config: f.config, task: f.task, batch: 1, imageSize: f.imageSize, write: false });
      const profile = profileGraph(built.graph);
      const p = plan({
        profile,
        gpu,
        gpus: f.gpus,
        nodes: f.nodes ?? Math.max(1, Math.ceil(f.gpus / gpu.gpusPerNode)),
        globalBatch: f.globalBatch,
        accum: f.accum,
        strategy: f.strategy as Strategy | "auto",
        mfu: f.mfu,
        overlap: 0.8,
        usableMemory: 0.9,
        checkpointing: f.checkpointing as "auto" | "on" | "off",
      });
      const images = f.images ?? (f.epochs !== undefined ? f.epochs * f.datasetSize : f.datasetSize);
      const run = p.chosen ? runCost(p, images, f.days) : undefined;
      if (f.json) {
        const c = p.chosen;
        const out = {
          model: built.model,
          config: built.config,
          gpu: f.gpu,
          gpus: f.gpus,
          nodes: p.request.nodes,
          microBatch: p.microBatch,
          strategy: c?.strategy ?? null,
          checkpointing: c?.checkpointing ?? null,
          fits: !!c,
          memoryPerGpuBytes: c?.memory.total ?? null,
          memory: c?.memory ?? null,
          usableBytesPerGpu: p.usableBytes,
          stepSeconds: c?.stepSeconds ?? null,
          imagesPerSecond: c?.imagesPerSecond ?? null,
          run: run ?? null,
          profile,
          strategies: p.all,
          assumptions: p.assumptions,
        };
        process.stdout.write(`${JSON.stringify(out)}\n`);
        return;
      }
      printPlan(built.model, built.config, profile, p, run);
    });
}

export interface RunCost {
  images: number;
  steps: number;
  wallHours: number;
  gpuHours: number;
  budget?: { days: number; gpuHours: number; images: number; epochs: number };
}

export function runCost(p: Plan, images: number, days: number | undefined): RunCost {
  const c = p.chosen;
  if (!c) throw new Error("no plan fits");
  const steps = Math.ceil(images / p.request.globalBatch);
  const wallHours = (steps * c.stepSeconds) / 3600;
  const out: RunCost = { images, steps, wallHours, gpuHours: wallHours * p.request.gpus };
  if (days !== undefined) {
    const seconds = days * 86400;
    const budgetImages = (seconds / c.stepSeconds) * p.request.globalBatch;
    out.budget = { days, gpuHours: days * 24 * p.request.gpus, images: budgetImages, epochs: budgetImages / 300e6 };
  }
  return out;
}

function printPlan(model: string, config: string, profile: ReturnType<typeof profileGraph>, p: Plan, run: RunCost | undefined) {
  const r = p.request;
  const row = (k: string, v: string) => console.log(`  ${chalk.dim(k.padEnd(13))}${v}`);
  const gib = (b: number) => (b / 1024 ** 3).toFixed(1);
  console.log(
    `${chalk.bold("plan")} ${chalk.bold(model)} ${config} on ${r.gpus} x ${r.gpu.name} (${r.nodes} node${r.nodes > 1 ? "s" : ""})`,
  );
  row(
    "model",
    `${formatCount(profile.params)} params, ${formatCount(profile.flopsPerSample)}FLOP/sample forward, activations ${formatBytes(profile.activationBytes)}/sample (${formatBytes(profile.checkpointBoundaryBytes + profile.largestUnitBytes + profile.outsideUnitBytes)} with checkpointing, ${profile.units} blocks)`,
  );
  row("batch", `global ${r.globalBatch} = ${r.gpus} GPUs x ${p.microBatch} micro-batch x ${r.accum} accumulation`);
  const c = p.chosen;
  if (!c) {
    console.log(
      chalk.red(
        `  nothing fits in ${gib(p.usableBytes)} GiB per GPU; try more GPUs, a smaller micro-batch (more --accum) or --checkpointing on`,
      ),
    );
  } else {
    row(
      "strategy",
      `${chalk.bold(c.strategy)}${c.checkpointing ? " + activation checkpointing" : ""}${r.strategy === "auto" ? chalk.dim(" (auto: fastest that fits)") : ""}`,
    );
    const m = c.memory;
    row(
      "memory/GPU",
      `${chalk.bold(gib(m.total))} GiB of ${gib(p.usableBytes)} GiB usable: weights ${gib(m.weights)}, gradients ${gib(m.gradients)}, optimizer ${gib(m.optimizer)}, activations ${gib(m.activations)}`,
    );
    row(
      "step",
      `${chalk.bold(c.stepSeconds.toFixed(2))} s (compute ${c.computeSeconds.toFixed(2)} s, communication ${c.commSeconds.toFixed(2)} s) -> ${chalk.bold(c.imagesPerSecond.toFixed(0))} images/s`,
    );
    if (run) {
      row(
        "run",
        `${formatCount(run.images)} images = ${run.steps.toLocaleString("en-US")} steps: ${run.wallHours.toFixed(1)} h wall, ${Math.round(run.gpuHours).toLocaleString("en-US")} GPU-hours`,
      );
      if (run.budget) {
        const b = run.budget;
        row(
          "budget",
          `${b.days} days on ${r.gpus} GPUs = ${Math.round(b.gpuHours).toLocaleString("en-US")} GPU-hours; at this rate ${formatCount(b.images)} images (${b.epochs.toFixed(2)} epochs of 300M)`,
        );
      }
    }
  }
  console.log(`  ${chalk.dim("strategies")}`);
  for (const s of p.all) {
    const name = `${s.strategy}${s.checkpointing ? "+ckpt" : ""}`.padEnd(12);
    const fit = s.fits ? chalk.green("fits") : chalk.red("OOM ");
    console.log(
      `    ${name} ${fit} ${gib(s.memory.total).padStart(7)} GiB  step ${s.stepSeconds.toFixed(2).padStart(7)} s  ${s.imagesPerSecond.toFixed(0).padStart(6)} img/s`,
    );
  }
  console.log(`  ${chalk.dim("assumptions")}`);
  for (const a of p.assumptions) console.log(`    - ${a}`);
}
