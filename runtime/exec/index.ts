// runtime/exec: one executor of ExecutablePlans over a Device (the PTX emulator or the CUDA driver).
export * from "./backends.ts";
export * from "./cuda-device.ts";
export * from "./device.ts";
export * from "./emu-device.ts";
export * from "./executor.ts";
export * from "./host-data.ts";
export * from "./lowering.ts";
export * from "./memory-plan.ts";
export * from "./plan-check.ts";
