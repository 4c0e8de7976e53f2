// The model DSL: what a model file imports.
export * as F from "./functional.ts";
export {
  type BuildOptions,
  defineModel,
  dim,
  instance,
  type ModelDefinition,
  type ModelInstance,
  spec,
  type TensorSpec,
  traceModel,
} from "./model.ts";
export { init, isTraining, Module, Parameter } from "./module.ts";
export * as nn from "./nn/index.ts";
export type * from "./shape-types.ts";
export { type AnyTensor, Tensor } from "./tensor.ts";
