// What the executor needs from a device: memory, copies, modules of PTX, launches in order, and
// a synchronisation point. Two implementations: EmuDevice (the PTX emulator on the CPU: how CI
// proves the executor) and CudaDevice (the driver: the real path). Everything is ordered as if on
// one stream: an upload or download happens after every launch enqueued before it.

/** A device address. bigint so CUDA's 64-bit pointers and the emulator's 2^40-based ones fit alike. */
export type DeviceAddress = bigint;

export type ScalarKind = "i32" | "u32" | "f32" | "i64" | "u64";

/** A kernel argument, typed as its `.param` is declared. */
export type DeviceArg =
  | { readonly kind: "ptr"; readonly address: DeviceAddress }
  | { readonly kind: ScalarKind; readonly value: number };

export interface LaunchShape {
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly dynamicSharedBytes: number;
  /** Names the launch in errors and in the per-label profile. */
  readonly label: string;
}

/** A loaded module (opaque: each device keeps its own handle inside). */
export interface DeviceModule {
  readonly name: string;
}

/** A kernel entry of a loaded module, ready to launch. */
export interface DeviceKernel {
  readonly module: string;
  readonly name: string;
}

/** A recorded launch sequence that replays with the same arguments (a CUDA graph on the GPU). */
export interface DeviceGraph {
  /** Enqueues the whole recorded sequence. */
  launch(): void;
  dispose(): void;
}

/** Device time of the work enqueued between start and stop. */
export interface DeviceTimer {
  stop(): Promise<number>;
}

/** Per launch label: how often it ran, and (on the emulator) what it executed. */
export interface LabelProfile {
  launches: number;
  /** Emulator: thread-level instructions by class; empty on the GPU. */
  instructions: Record<string, number>;
  totalInstructions: number;
  mmaOps: number;
  bytes: { globalLoad: number; globalStore: number; sharedLoad: number; sharedStore: number };
  /** Host wall time spent in the launch call (the emulator runs the kernel there). */
  hostMs: number;
}

export interface Device {
  readonly kind: "ptx-emu" | "cuda";
  /** One line: "PTX emulator (CPU)", "NVIDIA H200 (sm_90, 139.8 GiB)". */
  readonly description: string;
  /** Device memory of at least `bytes` (contents undefined), 256-byte aligned. */
  alloc(bytes: number): DeviceAddress;
  free(address: DeviceAddress): void;
  /** Host -> device, in stream order; resolves when the data has arrived. */
  upload(address: DeviceAddress, data: ArrayBufferView): Promise<void>;
  /** Device -> host into `into` (its whole length), in stream order; resolves when it is there. */
  download(address: DeviceAddress, into: ArrayBufferView): Promise<void>;
  /** Device -> device copy, in stream order. */
  copy(dst: DeviceAddress, src: DeviceAddress, bytes: number): void;
  /** Sets `bytes` bytes to `byte`, in stream order. */
  fill(address: DeviceAddress, bytes: number, byte: number): void;
  loadModule(name: string, ptx: string): Promise<DeviceModule>;
  /** An entry of a module; `maxDynamicSharedBytes` raises the kernel's limit past 48 KiB when needed. */
  kernel(module: DeviceModule, entry: string, maxDynamicSharedBytes?: number): DeviceKernel;
  /** Enqueues a launch. The emulator runs it now and throws its fault; the GPU reports faults later. */
  launch(kernel: DeviceKernel, shape: LaunchShape, args: readonly DeviceArg[]): void;
  /** Waits for everything enqueued; a GPU fault surfaces here. */
  synchronize(): Promise<void>;
  /** Records the launches `record` enqueues (without running them) for replay. */
  capture(record: () => void): Promise<DeviceGraph>;
  timer(): DeviceTimer;
  /** Launch counts and instruction counters by label since the last reset. */
  profile(): Map<string, LabelProfile>;
  resetProfile(): void;
  /** Bytes held from the device now and at most (for reports). */
  memoryStats(): { reservedBytes: number; peakReservedBytes: number };
  dispose(): Promise<void>;
}

export function emptyProfile(): LabelProfile {
  return {
    launches: 0,
    instructions: {},
    totalInstructions: 0,
    mmaOps: 0,
    bytes: { globalLoad: 0, globalStore: 0, sharedLoad: 0, sharedStore: 0 },
    hostMs: 0,
  };
}

/** `address + offset` as a device address. */
export function offsetAddress(address: DeviceAddress, offsetBytes: number): DeviceAddress {
  return offsetBytes === 0 ? address : address + BigInt(offsetBytes);
}

/** Address alignment every allocation and planned offset keeps (cudaMalloc's; 16-byte vectors need less). */
export const DEVICE_ALIGNMENT = 256;

export function alignUp(bytes: number, alignment = DEVICE_ALIGNMENT): number {
  return Math.ceil(bytes / alignment) * alignment;
}
