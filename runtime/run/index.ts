// runtime/run: `ptc run`, backends, weight loading, run inputs.
export { type Backend, type BackendFeeds, type BackendOptions, backendNames, getBackend, registerBackend } from "./backend.ts";
export { impliedSizes, randomNormal, runInputs } from "./inputs.ts";
export { type RunOptions, type RunResult, run } from "./run.ts";
export { registerRunCommand } from "./run-command.ts";
export { loadWeights } from "./weights.ts";
