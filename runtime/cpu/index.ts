export * from "./bf16.ts";
export { type ExecuteOptions, type Execution, execute, type Feeds } from "./executor.ts";
export { initParam, initParams } from "./init.ts";
export { cpuKernel, registerKernel } from "./kernels/index.ts";
export * from "./random.ts";
export * from "./tensor.ts";
