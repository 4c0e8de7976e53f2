export * from "./errors.ts";
export * from "./graph.ts";
export * from "./json.ts";
export * from "./ops/index.ts";
export * from "./printer.ts";
export * from "./stats.ts";
export * from "./types.ts";
