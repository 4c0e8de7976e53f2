export { GPUS, type GpuSpec, gpuSpec } from "./hardware.ts";
export { type Plan, type PlanRequest, plan, type StrategyPlan } from "./plan.ts";
export { registerPlanCommand, runCost } from "./plan-command.ts";
export { type ModelProfile, profileGraph, unitOf } from "./profile.ts";
export * from "./strategies.ts";
