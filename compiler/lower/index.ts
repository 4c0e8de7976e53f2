export type { Analysis, Disposition } from "./analysis.ts";
export { type LoweredGraph, type LowerOptions, lowerGraph, unlowerable, unloweredOps } from "./lower.ts";
export { lowerPackedAdamW, type PackedAdamW, packedAdamwNames } from "./optimizer.ts";
export { PACK_ALIGN, type PackLayout, type PackMember, packLayout, renamedLayout } from "./pack.ts";
export * from "./plan.ts";
export { planFromJSON, planToJSON } from "./plan-json.ts";
export { loweredOps } from "./rules/registry.ts";
export {
  flatAccumulateGraph,
  type LoweredTrainingStep,
  lowerTrainingStep,
  PACKED_GRADS,
  type TrainingParam,
} from "./training.ts";
