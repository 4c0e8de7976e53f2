// `ptc bench` (npm run bench): per kernel, ptxas registers / shared memory / occupancy and the PTX
// emulator's instruction mix: the kernel catalogue (bench/kernels.ts, which also writes the GPU cases
// with --device) and every kernel of the xxs model's plans (bench/xxs-kernels.ts).

import type { Command } from "commander";
import { UserError } from "../compiler/ir/index.ts";
import { benchXxsKernels } from "./xxs-kernels.ts";

interface BenchFlags {
  catalogue: boolean;
  xxs: boolean;
  task: string;
  precision: string;
  device?: string;
}

export function registerBenchCommand(program: Command): void {
  program
    .command("bench")
    .description("kernel benchmarks: ptxas registers, shared memory, occupancy and the emulator's instruction mix per kernel")
    .option("--no-catalogue", "skip the kernel catalogue (bench/kernels.ts)")
    .option("--no-xxs", "skip the xxs model's kernels (bench/xxs-kernels.ts)")
    .option("--task <name>", "xxs task whose forward and training step are benchmarked (pretrain or seg)", "pretrain")
    .option("--precision <p>", "compute dtype of the xxs graphs (bf16 or f32)", "bf16")
    .option("--device <dir>", "also write the catalogue's GPU cases for bench/device/kernels.py into <dir>")
    .action(async (flags: BenchFlags) => {
      if (flags.task !== "pretrain" && flags.task !== "seg")
        throw new UserError(`expected pretrain or seg, got '${flags.task}'`, "--task");
      if (flags.precision !== "bf16" && flags.precision !== "f32")
        throw new UserError(`expected bf16 or f32, got '${flags.precision}'`, "--precision");
      // bench/kernels.ts runs when imported and reads --device from the command line.
      if (flags.catalogue) await import("./kernels.ts");
      if (flags.xxs) await benchXxsKernels({ task: flags.task, precision: flags.precision });
    });
}
