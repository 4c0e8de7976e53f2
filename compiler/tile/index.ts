export * from "./builder.ts";
export * from "./expr.ts";
export * from "./host-eval.ts";
export * from "./ir.ts";
export * from "./layout.ts";
export { MapContext } from "./map-context.ts";
export * from "./printer.ts";
export * from "./types.ts";
