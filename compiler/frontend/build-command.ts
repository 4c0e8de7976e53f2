// `ptc build <model.ts>`: the command-line face of build().

import chalk from "chalk";
import type { Command } from "commander";
import { build } from "./build.ts";
import { parseImageSize, parsePositiveInt, parsePrecision } from "./flags.ts";
import { formatBytes, formatCount, formatSeconds } from "./format.ts";

export interface BuildFlags {
  config?: string;
  task?: string;
  batch: number;
  imageSize?: [number, number];
  training?: boolean;
  precision: "f32" | "bf16";
  out?: string;
  json?: boolean;
  typecheck: boolean;
  fuse: boolean;
  kernels: boolean;
}

export function registerBuildCommand(program: Command): void {
  program
    .command("build")
    .description("type-check a model file, trace it to a graph, optimise it and write the artifacts")
    .argument("<model.ts>", "model file that default-exports defineModel({...})")
    .option("-c, --config <name>", "model config to build (default: the model's defaultConfig)")
    .option("--task <name>", "model task, for models with several (e.g. pretrain, seg, classify)")
    .option("-b, --batch <n>", "samples per step traced into the graph", parsePositiveInt("--batch"), 1)
    .option("--image-size <HxW>", "input image size, e.g. 224 or 512x1024", parseImageSize)
    .option("--training", "trace the training-mode forward (dropout, drop-path active); kernels for the training step")
    .option("--precision <p>", "f32, or bf16 compute (the model's computeDType; parameters stay f32)", parsePrecision, "f32")
    .option("-o, --out <dir>", "artifact folder (default: dist/<model>-<config>)")
    .option("--json", "print the summary as one JSON object on stdout")
    .option("--no-typecheck", "skip the TypeScript type check (faster; shape errors then surface when tracing)")
    .option("--no-fuse", "leave window attention, FPN merges and cross-attention unfused (for comparison)")
    .option("--no-kernels", "stop after the graph: no lowering, PTX, ptxas or plan.json (faster)")
    .action(async (file: string, flags: BuildFlags) => {
      const r = await build(file, flags);
      const summary = {
        model: r.model,
        config: r.config,
        task: r.task ?? null,
        batch: r.batch,
        params: r.stats.params,
        flops: r.flopsPerSample,
        nodes: r.stats.nodes,
        ops: r.stats.ops,
        components: Object.fromEntries(r.components.map((c) => [c.name, c.params])),
        fusions: r.fusions,
        hbmBytes: r.hbmBytes,
        kernels: r.kernels,
        artifacts: r.artifacts,
        timings: r.timings,
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        return;
      }
      const total = Object.values(r.timings).reduce((a, b) => a + b, 0);
      const ops = Object.entries(r.stats.ops)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(chalk.dim(" · "));
      const row = (k: string, v: string) => console.log(`  ${chalk.dim(k.padEnd(11))}${v}`);
      console.log(
        `${chalk.bold.green("built")} ${chalk.bold(r.model)} ${chalk.dim("config")} ${r.config}${r.task ? ` ${chalk.dim("task")} ${r.task}` : ""}`,
      );
      row("params", `${chalk.bold(formatCount(r.stats.params))} (${r.stats.params.toLocaleString("en-US")})`);
      for (const c of r.components) row("", `${chalk.dim(c.name.padEnd(28))} ${formatCount(c.params).padStart(8)}`);
      row("flops", `${chalk.bold(formatCount(r.flopsPerSample))}FLOP per sample (forward, batch ${r.batch})`);
      row("nodes", String(r.stats.nodes));
      row(
        "fusions",
        `${Object.entries(r.fusions)
          .map(([k, v]) => `${k} ${v}`)
          .join(chalk.dim(" · "))}${flags.fuse ? "" : chalk.dim(" (--no-fuse)")}`,
      );
      const traffic = (b: { fused: number; unfused: number }) =>
        `${formatBytes(b.fused)} fused / ${formatBytes(b.unfused)} unfused (${(b.fused / b.unfused).toFixed(2)}x)`;
      row("hbm bytes", `forward ${traffic(r.hbmBytes.forward)}`);
      if (r.hbmBytes.trainingStep) row("", `training step ${traffic(r.hbmBytes.trainingStep)}`);
      row("ops", ops);
      if (r.kernels) {
        const k = r.kernels;
        const asm = k.ptxas
          ? `${k.assembled} assembled by ${k.ptxas} for sm_80, ${k.spills === 0 ? "no spills" : chalk.red(`${k.spills} spilling`)}, max ${k.maxRegisters} registers`
          : r.outDir
            ? chalk.yellow("ptxas not on PATH: PTX only")
            : "not written";
        row(
          "kernels",
          `${chalk.bold(String(k.kernels))} kernels, ${k.launches} launches, ${k.buffers} buffers (${k.graph} graph${k.step === "training step" ? ", training step" : ""}); ${asm}`,
        );
        if (k.reason) row("", chalk.dim(k.reason));
      }
      if (r.outDir) row("artifacts", r.artifacts.join(", "));
      row(
        "time",
        `${formatSeconds(total)} (${Object.entries(r.timings)
          .map(([k, v]) => `${k} ${formatSeconds(v)}`)
          .join(", ")})`,
      );
    });
}
