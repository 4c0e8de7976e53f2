// `ptc run <model.ts>`: the command-line face of run().

import chalk from "chalk";
import type { Command } from "commander";
import { parseImageSize, parsePositiveInt, parsePrecision } from "../../compiler/frontend/flags.ts";
import { formatSeconds } from "../../compiler/frontend/format.ts";
import { formatShape, UserError } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/index.ts";
import { backendNames } from "./backend.ts";
import { run } from "./run.ts";

interface RunFlags {
  config?: string;
  task?: string;
  batch?: number;
  imageSize?: [number, number];
  weights?: string;
  weightsFormat?: string;
  inputs?: string;
  seed: number;
  out: string;
  backend: string;
  typecheck: boolean;
  precision: "f32" | "bf16";
  fuse: boolean;
}

function parseSeed(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new UserError(`expected an integer in [0, 2^32), got '${v}'`, "--seed");
  return n;
}

function describe(t: HostTensor): string {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let sum = 0;
  for (const v of t.data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  const f = (v: number) => v.toPrecision(5);
  if (t.data.length === 1) return `${t.dtype}${formatShape(t.shape)} = ${f(t.data[0])}`;
  return `${t.dtype}${formatShape(t.shape)} mean ${f(sum / t.data.length)} min ${f(min)} max ${f(max)}`;
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("run a model's forward pass on a backend and write its named outputs to safetensors")
    .argument("<model.ts>", "model file that default-exports defineModel({...})")
    .option("-c, --config <name>", "model config (default: the model's defaultConfig)")
    .option("--task <name>", "model task, for models with several (e.g. pretrain, seg, classify)")
    .option("-b, --batch <n>", "samples (default: the inputs file's, else 1)", parsePositiveInt("--batch"))
    .option("--image-size <HxW>", "input image size (default: the inputs file's, else the config's)", parseImageSize)
    .option("--weights <file>", "parameters from a safetensors file (default: the model's seeded initialisation)")
    .option("--weights-format <name>", "read --weights in a foreign layout the model declares (e.g. torchvision)")
    .option("--inputs <file>", "inputs from a safetensors file, by the model's input names (default: seeded random)")
    .option("--seed <n>", "seed of the initialisation, random inputs and dropout", parseSeed, 0)
    .requiredOption("-o, --out <file>", "where to write the outputs (safetensors, one tensor per output name)")
    .option("--backend <name>", `where to execute (${backendNames().join(", ")})`, "cpu")
    .option("--precision <p>", "f32, or bf16 compute (the model's computeDType; parameters stay f32)", parsePrecision, "f32")
    .option("--no-fuse", "leave window attention, FPN merges and cross-attention unfused (for comparison)")
    .option("--no-typecheck", "skip the TypeScript type check of the model file")
    .action(async (file: string, flags: RunFlags) => {
      const r = await run(file, flags);
      console.log(
        `${chalk.bold.green("ran")} ${chalk.bold(r.traced.name)} ${chalk.dim("config")} ${r.traced.configName}${
          r.traced.task ? ` ${chalk.dim("task")} ${r.traced.task}` : ""
        } ${chalk.dim("on")} ${flags.backend}`,
      );
      for (const [name, t] of r.outputs) console.log(`  ${chalk.dim(name.padEnd(10))}${describe(t)}`);
      const total = Object.values(r.timings).reduce((a, b) => a + b, 0);
      const stages = Object.entries(r.timings)
        .map(([k, v]) => `${k} ${formatSeconds(v)}`)
        .join(", ");
      console.log(`  ${chalk.dim("wrote".padEnd(10))}${flags.out}`);
      console.log(`  ${chalk.dim("time".padEnd(10))}${formatSeconds(total)} (${stages})`);
    });
}
