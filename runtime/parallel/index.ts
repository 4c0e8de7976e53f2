// runtime/parallel: collectives and data-parallel strategies (README.md).
export * from "./buckets.ts";
export * from "./collectives.ts";
export * from "./cpu-collectives.ts";
export * from "./create.ts";
export * from "./data-parallel.ts";
export * from "./ddp.ts";
export * from "./flat-layout.ts";
export * from "./fsdp.ts";
export * from "./nccl-collectives.ts";
export * from "./segments.ts";
export * from "./sharded.ts";
export * from "./staged-collectives.ts";
