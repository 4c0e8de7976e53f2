// The PTX emulator's public surface: parse sm_80 PTX text, allocate device memory, launch kernels on the CPU.

export type { PtxLocation } from "./errors.ts";
export { PtxParseError, PtxRuntimeError } from "./errors.ts";
export { ldmatrixAddressLane, ldmatrixRowCol, mmaARowCol, mmaBRowCol, mmaCRowCol } from "./fragments.ts";
export type { LaunchConfig, LaunchStats } from "./launch.ts";
export { launch, MAX_SHARED_BYTES_SM80 } from "./launch.ts";
export type { InstructionClass } from "./machine.ts";
export { INSTRUCTION_CLASSES } from "./machine.ts";
export { GLOBAL_BASE, GlobalMemory, SHARED_WINDOW } from "./memory.ts";
export type { KernelParam, KernelProgram, PtxModule } from "./module.ts";
export { parsePtx } from "./module.ts";
export { bf16ToF32, f16ToF32, f32ToBf16, roundToBf16, toF16 } from "./numeric.ts";
