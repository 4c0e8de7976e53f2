// Reverse-mode autodiff and the optimizer/precision graphs of a training step (README.md).
export { ADAMW_DEFAULTS, type AdamWOptions, type AdamWParam, accumulateGrads, adamwNames, adamwUpdate } from "./adamw.ts";
export { Builder } from "./builder.ts";
export {
  checkpointUnitOf,
  checkpointUnits,
  RECOMPUTE_ATTR,
  type RecomputePlan,
  type RecomputeSegment,
  recomputeSegments,
} from "./checkpoint.ts";
export { adamwParams, decayExcluded } from "./decay.ts";
export { type GradOptions, grad, gradInputName, gradName } from "./grad.ts";
export { type GradArgs, type GradRule, gradientRule, hasGradient, registerGradient } from "./registry.ts";
export { splice, type TrainingStepOptions, trainingStep } from "./train-step.ts";
