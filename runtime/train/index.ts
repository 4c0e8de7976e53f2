// The trainer (README.md): schedule, step, checkpoints, the loop, `ptc train`.

export * from "./checkpoint.ts";
export * from "./executor.ts";
export * from "./init-weights.ts";
export * from "./inputs.ts";
export * from "./progress.ts";
export * from "./schedule.ts";
export * from "./step.ts";
export { registerTrainCommand } from "./train-command.ts";
export * from "./trainer.ts";
