export type { Analysis, Disposition } from "./analysis.ts";
export { type LoweredGraph, type LowerOptions, lowerGraph, unlowerable, unloweredOps } from "./lower.ts";
export * from "./plan.ts";
export { planFromJSON, planToJSON } from "./plan-json.ts";
export { loweredOps } from "./rules/registry.ts";
