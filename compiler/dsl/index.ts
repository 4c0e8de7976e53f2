// The model DSL: what a model file imports.
export { UserError } from "../ir/index.ts";
export * as F from "./functional.ts";
export {
  type BuildOptions,
  defineModel,
  dim,
  instance,
  type ModelDefinition,
  type ModelInstance,
  spec,
  type TensorData,
  type TensorSpec,
  traceModel,
  type WeightFormat,
  type WeightTarget,
} from "./model.ts";
export { init, isTraining, Module, Parameter } from "./module.ts";
export * as nn from "./nn/index.ts";
export type * from "./shape-types.ts";
export { type AnyTensor, Tensor } from "./tensor.ts";
