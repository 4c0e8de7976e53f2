export { type BuildOptions, type BuildResult, build, componentParams, writeAtomic } from "./build.ts";
export { registerBuildCommand } from "./build-command.ts";
export * from "./flags.ts";
export * from "./format.ts";
export { loadModel } from "./load.ts";
export { ModelTypeError, typeCheckModel } from "./typecheck.ts";
