export type { Analysis, Disposition } from "./analysis.ts";
export { type LoweredGraph, type LowerOptions, lowerGraph } from "./lower.ts";
export * from "./plan.ts";
export { loweredOps } from "./rules/registry.ts";
