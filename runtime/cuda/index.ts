// runtime/cuda: the GPU runtime (driver addon, allocator, NCCL, rendezvous, launcher).
export * from "./allocator.ts";
export * from "./devices-command.ts";
export * from "./driver.ts";
export * from "./kernel-args.ts";
export * from "./launch-env.ts";
export * from "./launcher.ts";
export * from "./nccl.ts";
export * from "./store.ts";
