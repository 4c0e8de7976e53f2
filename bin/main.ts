// The `ptc` command line: a thin layer that registers each layer's commands. A user's mistake
// (UserError) prints as one red line with its location and exits 1; anything else keeps its stack.

import chalk from "chalk";
import { Command } from "commander";
import { registerBenchCommand } from "../bench/bench-command.ts";
import { registerBuildCommand } from "../compiler/frontend/index.ts";
import { isUserError } from "../compiler/ir/index.ts";
import { registerDevicesCommand } from "../runtime/cuda/devices-command.ts";
import { registerPlanCommand } from "../runtime/plan/index.ts";
import { registerRunCommand } from "../runtime/run/index.ts";
import { registerTrainCommand } from "../runtime/train/train-command.ts";

const program = new Command();
program
  .name("ptc")
  .description("ptc: a typed tensor compiler and training runtime for vision transformers")
  .version("0.1.0")
  .showHelpAfterError("(run with --help for usage)")
  .addHelpText(
    "after",
    `
Examples:
  ptc build model/perceptnet.ts                     build the default config, print a summary
  ptc build model/perceptnet.ts --config large --json
  ptc build model/examples/mlp.ts --out /tmp/mlp`,
  );

registerBuildCommand(program);
registerPlanCommand(program);
registerRunCommand(program);
registerTrainCommand(program);
registerDevicesCommand(program);
registerBenchCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (isUserError(e)) {
    for (const line of e.line.split("\n")) console.error(`${chalk.red("error:")} ${line}`);
    process.exit(1);
  }
  throw e;
}
