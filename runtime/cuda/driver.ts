// Typed access to the CUDA driver through the ptc_cuda addon (runtime/cuda/native). Handles are
// bigints (the driver's pointers) branded per kind so a stream cannot be passed as an event.
// Loading this module touches no GPU; available() says whether the driver can be used.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { UserError } from "../../compiler/ir/index.ts";
import { type KernelArg, packKernelArgs } from "./kernel-args.ts";

declare const handleKind: unique symbol;
type Handle<K extends string> = bigint & { readonly [handleKind]: K };
export type DevicePtr = Handle<"DevicePtr">;
export type Stream = Handle<"Stream">;
export type CudaEvent = Handle<"Event">;
export type CudaModule = Handle<"Module">;
export type KernelFunction = Handle<"Function">;
export type CudaGraph = Handle<"Graph">;
export type CudaGraphExec = Handle<"GraphExec">;
export type NcclComm = Handle<"NcclComm">;

/** The legacy default stream; prefer streams from createStream(). */
export const DEFAULT_STREAM = 0n as Stream;

export interface DriverStatus {
  readonly available: boolean;
  /** "ok" | "not-found" (no libcuda.so.1) | "too-old" | "init-failed" (cuInit failed, e.g. no device). */
  readonly kind: "ok" | "not-found" | "too-old" | "init-failed";
  readonly reason: string;
}

/** Raw device properties as the driver reports them (-1 where a driver no longer reports one). */
export interface NativeDeviceInfo {
  readonly name: string;
  readonly totalMemBytes: number;
  readonly ccMajor: number;
  readonly ccMinor: number;
  readonly smCount: number;
  readonly clockKHz: number;
  readonly memoryClockKHz: number;
  readonly memoryBusWidthBits: number;
  readonly l2CacheBytes: number;
  readonly maxThreadsPerBlock: number;
  readonly maxSharedMemoryPerBlockOptin: number;
  readonly pciBusId: number;
}

export interface DeviceInfo extends NativeDeviceInfo {
  readonly index: number;
  /** "9.0" */
  readonly computeCapability: string;
  /** 2 x memory clock x bus width / 8 (DDR), or undefined when the driver does not report the clock. */
  readonly peakBandwidthBytesPerSecond: number | undefined;
}

/** One NCCL collective as the addon takes it; nccl.ts builds these from typed calls. */
export interface NativeCollective {
  readonly op: "allReduce" | "reduceScatter" | "allGather" | "broadcast";
  readonly send: bigint;
  readonly recv: bigint;
  readonly count: number;
  readonly dtype: number;
  readonly redop?: number;
  readonly root?: number;
}

/** The addon's exports, exactly (see runtime/cuda/native/*.cc). */
export interface NativeCuda {
  probe(): DriverStatus;
  driverVersion(): number;
  deviceCount(): number;
  deviceInfo(index: number): NativeDeviceInfo;
  setDevice(index: number): void;
  currentDevice(): number;
  synchronize(): Promise<void>;
  memGetInfo(): { free: number; total: number };
  memAlloc(bytes: number): bigint;
  memFree(ptr: bigint): void;
  hostAlloc(bytes: number): ArrayBuffer;
  isPinned(view: ArrayBufferView | ArrayBuffer): boolean;
  memcpyHtoD(dst: bigint, src: ArrayBufferView | ArrayBuffer, stream: bigint): Promise<void>;
  memcpyDtoH(dst: ArrayBufferView | ArrayBuffer, src: bigint, stream: bigint): Promise<void>;
  memcpyHtoDAsync(dst: bigint, src: ArrayBufferView | ArrayBuffer, stream: bigint): void;
  memcpyDtoHAsync(dst: ArrayBufferView | ArrayBuffer, src: bigint, stream: bigint): void;
  memcpyDtoDAsync(dst: bigint, src: bigint, bytes: number, stream: bigint): void;
  memsetD8(ptr: bigint, value: number, bytes: number): void;
  memsetD8Async(ptr: bigint, value: number, bytes: number, stream: bigint): void;
  streamCreate(): bigint;
  streamDestroy(stream: bigint): void;
  streamSynchronize(stream: bigint): Promise<void>;
  streamQuery(stream: bigint): boolean;
  streamWaitEvent(stream: bigint, event: bigint): void;
  eventCreate(timing: boolean): bigint;
  eventRecord(event: bigint, stream: bigint): void;
  eventSynchronize(event: bigint): Promise<void>;
  eventElapsedMs(start: bigint, end: bigint): number;
  eventDestroy(event: bigint): void;
  moduleLoad(image: string | Uint8Array): Promise<{ module: bigint; infoLog: string }>;
  moduleUnload(module: bigint): void;
  moduleGetFunction(module: bigint, name: string): bigint;
  funcGetAttribute(fn: bigint, attribute: number): number;
  funcSetAttribute(fn: bigint, attribute: number, value: number): void;
  launchKernel(
    fn: bigint,
    grid: readonly number[],
    block: readonly number[],
    sharedBytes: number,
    stream: bigint,
    params: Uint8Array,
    offsets: Uint32Array,
  ): void;
  streamBeginCapture(stream: bigint, mode: number): void;
  streamEndCapture(stream: bigint): bigint;
  graphInstantiate(graph: bigint): bigint;
  graphLaunch(exec: bigint, stream: bigint): void;
  graphExecDestroy(exec: bigint): void;
  graphDestroy(graph: bigint): void;
  ncclLoad(path?: string): DriverStatus;
  ncclVersion(): number;
  ncclGetUniqueId(): Uint8Array;
  ncclCommInitRank(nranks: number, id: Uint8Array, rank: number): Promise<bigint>;
  ncclCollectives(comm: bigint, stream: bigint, ops: readonly NativeCollective[]): Promise<void>;
  ncclWait(comm: bigint, stream: bigint, timeoutMs: number): Promise<void>;
  ncclCommAsyncError(comm: bigint): number;
  ncclCommDestroy(comm: bigint): Promise<void>;
  ncclCommAbort(comm: bigint): Promise<void>;
  formatBytes(bytes: number): string;
}

/** Where node-gyp puts the addon (binding.gyp at the package root). */
export const ADDON_PATH = fileURLToPath(new URL("../../build/Release/ptc_cuda.node", import.meta.url));

let addon: NativeCuda | undefined;

/** Loads the addon once; a missing build is a clear error, not a stack from require(). */
export function loadAddon(): NativeCuda {
  if (addon) return addon;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as NativeCuda;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "MODULE_NOT_FOUND" || code === "ENOENT")
      throw new UserError(
        `ptc's CUDA addon is not built (${ADDON_PATH} is missing): run \`npm rebuild\` (or \`npx node-gyp rebuild\`) in the ptc folder; it needs g++, make and python3`,
      );
    throw e;
  }
  return addon;
}

export function driverStatus(): DriverStatus {
  return loadAddon().probe();
}

/** True when libcuda.so.1 loaded and cuInit succeeded. */
export function available(): boolean {
  return driverStatus().available;
}

/** Why the driver cannot be used ("libcuda.so.1 not found: no NVIDIA driver on this machine"), or undefined. */
export function driverError(): string | undefined {
  const s = driverStatus();
  return s.available ? undefined : s.reason;
}

/** The short cause, as `ptc devices` and `--device cuda` print it: "libcuda.so.1 not found". */
export function driverErrorCause(status: DriverStatus = driverStatus()): string {
  return status.reason.split(":")[0];
}

/** "no CUDA driver found (libcuda.so.1 not found); ptc will use the CPU backend" */
export function cpuFallbackMessage(status: DriverStatus = driverStatus()): string {
  const what = status.kind === "not-found" ? "no CUDA driver found" : "CUDA is not usable";
  const cause = status.kind === "not-found" ? driverErrorCause(status) : status.reason;
  return `${what} (${cause}); ptc will use the CPU backend`;
}

/** The driver, or a UserError saying why there is none (for `--device cuda`). */
export function requireCuda(): CudaDriver {
  const status = driverStatus();
  if (!status.available) {
    const what = status.kind === "not-found" ? "no CUDA driver found" : "CUDA is not usable";
    const cause = status.kind === "not-found" ? driverErrorCause(status) : status.reason;
    throw new UserError(`${what} (${cause}); --device cuda needs an NVIDIA GPU and driver`, "--device");
  }
  return new CudaDriver(loadAddon());
}

/** CU_FUNC_ATTRIBUTE_* values from cuda.h (CUfunction_attribute). */
export const FuncAttribute = {
  maxThreadsPerBlock: 0,
  sharedSizeBytes: 1,
  constSizeBytes: 2,
  localSizeBytes: 3,
  numRegs: 4,
  ptxVersion: 5,
  binaryVersion: 6,
  maxDynamicSharedSizeBytes: 8,
} as const;
export type FuncAttributeName = keyof typeof FuncAttribute;

/** CUstreamCaptureMode values from cuda.h. */
const CaptureMode = { global: 0, threadLocal: 1, relaxed: 2 } as const;

export interface LaunchConfig {
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly sharedBytes?: number;
  readonly stream?: Stream;
}

/** The driver API with ptc's types; create one with requireCuda(). */
export class CudaDriver {
  constructor(readonly native: NativeCuda) {}

  /** 13000 -> "13.0" */
  driverVersion(): string {
    const v = this.native.driverVersion();
    return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
  }
  deviceCount(): number {
    return this.native.deviceCount();
  }
  device(index: number): DeviceInfo {
    const d = this.native.deviceInfo(index);
    const peak =
      d.memoryClockKHz > 0 && d.memoryBusWidthBits > 0 ? 2 * d.memoryClockKHz * 1000 * (d.memoryBusWidthBits / 8) : undefined;
    return { ...d, index, computeCapability: `${d.ccMajor}.${d.ccMinor}`, peakBandwidthBytesPerSecond: peak };
  }
  devices(): DeviceInfo[] {
    return Array.from({ length: this.deviceCount() }, (_, i) => this.device(i));
  }
  /** Binds this process to one device (its primary context); call once before anything below. */
  setDevice(index: number): void {
    this.native.setDevice(index);
  }
  synchronize(): Promise<void> {
    return this.native.synchronize();
  }
  memInfo(): { free: number; total: number } {
    return this.native.memGetInfo();
  }

  // --- memory
  memAlloc(bytes: number): DevicePtr {
    return this.native.memAlloc(bytes) as DevicePtr;
  }
  memFree(ptr: DevicePtr): void {
    this.native.memFree(ptr);
  }
  /** Pinned (page-locked) host memory; freed when the ArrayBuffer is garbage-collected. */
  hostAlloc(bytes: number): ArrayBuffer {
    return this.native.hostAlloc(bytes);
  }
  /**
   * Copies a whole host view to the device, off the JS thread, in `stream`'s order (after the work
   * already enqueued there); resolves once the data is on the device.
   */
  copyToDevice(dst: DevicePtr, src: ArrayBufferView, stream: Stream = DEFAULT_STREAM): Promise<void> {
    return this.native.memcpyHtoD(dst, src, stream);
  }
  /** Fills a whole host view from the device in `stream`'s order; resolves once the data is here. */
  copyFromDevice(dst: ArrayBufferView, src: DevicePtr, stream: Stream = DEFAULT_STREAM): Promise<void> {
    return this.native.memcpyDtoH(dst, src, stream);
  }
  /** Stream-ordered copy from pinned memory (hostAlloc); keep `src` alive until the stream syncs. */
  copyToDeviceAsync(dst: DevicePtr, src: ArrayBufferView, stream: Stream): void {
    this.native.memcpyHtoDAsync(dst, src, stream);
  }
  copyFromDeviceAsync(dst: ArrayBufferView, src: DevicePtr, stream: Stream): void {
    this.native.memcpyDtoHAsync(dst, src, stream);
  }
  copyDeviceAsync(dst: DevicePtr, src: DevicePtr, bytes: number, stream: Stream): void {
    this.native.memcpyDtoDAsync(dst, src, bytes, stream);
  }
  memset(ptr: DevicePtr, byte: number, bytes: number, stream?: Stream): void {
    if (stream === undefined) this.native.memsetD8(ptr, byte, bytes);
    else this.native.memsetD8Async(ptr, byte, bytes, stream);
  }

  // --- streams and events
  createStream(): Stream {
    return this.native.streamCreate() as Stream;
  }
  destroyStream(stream: Stream): void {
    this.native.streamDestroy(stream);
  }
  streamSynchronize(stream: Stream): Promise<void> {
    return this.native.streamSynchronize(stream);
  }
  /** True when all work on the stream has finished. */
  streamDone(stream: Stream): boolean {
    return this.native.streamQuery(stream);
  }
  streamWaitEvent(stream: Stream, event: CudaEvent): void {
    this.native.streamWaitEvent(stream, event);
  }
  createEvent(timing = true): CudaEvent {
    return this.native.eventCreate(timing) as CudaEvent;
  }
  recordEvent(event: CudaEvent, stream: Stream): void {
    this.native.eventRecord(event, stream);
  }
  eventSynchronize(event: CudaEvent): Promise<void> {
    return this.native.eventSynchronize(event);
  }
  elapsedMs(start: CudaEvent, end: CudaEvent): number {
    return this.native.eventElapsedMs(start, end);
  }
  destroyEvent(event: CudaEvent): void {
    this.native.eventDestroy(event);
  }

  // --- modules and launches
  /** Loads PTX text (JIT-compiled by the driver, off the JS thread) or a cubin image. */
  async loadModule(image: string | Uint8Array): Promise<{ module: CudaModule; infoLog: string }> {
    // cuModuleLoadDataEx reads PTX as a NUL-terminated string; the addon copies the text with its NUL.
    const { module, infoLog } = await this.native.moduleLoad(image);
    return { module: module as CudaModule, infoLog };
  }
  unloadModule(module: CudaModule): void {
    this.native.moduleUnload(module);
  }
  getFunction(module: CudaModule, name: string): KernelFunction {
    return this.native.moduleGetFunction(module, name) as KernelFunction;
  }
  funcAttribute(fn: KernelFunction, attribute: FuncAttributeName): number {
    return this.native.funcGetAttribute(fn, FuncAttribute[attribute]);
  }
  /** E.g. setFuncAttribute(fn, "maxDynamicSharedSizeBytes", 100 * 1024) before launching with > 48 KiB. */
  setFuncAttribute(fn: KernelFunction, attribute: FuncAttributeName, value: number): void {
    this.native.funcSetAttribute(fn, FuncAttribute[attribute], value);
  }
  launch(fn: KernelFunction, config: LaunchConfig, args: readonly KernelArg[]): void {
    const { params, offsets } = packKernelArgs(args);
    this.native.launchKernel(
      fn,
      config.grid,
      config.block,
      config.sharedBytes ?? 0,
      config.stream ?? DEFAULT_STREAM,
      params,
      offsets,
    );
  }

  // --- CUDA graphs
  /** Starts recording `stream` into a graph; "threadLocal" forbids cuMemAlloc on this thread meanwhile. */
  beginCapture(stream: Stream, mode: keyof typeof CaptureMode = "threadLocal"): void {
    this.native.streamBeginCapture(stream, CaptureMode[mode]);
  }
  endCapture(stream: Stream): CudaGraph {
    return this.native.streamEndCapture(stream) as CudaGraph;
  }
  instantiateGraph(graph: CudaGraph): CudaGraphExec {
    return this.native.graphInstantiate(graph) as CudaGraphExec;
  }
  launchGraph(exec: CudaGraphExec, stream: Stream): void {
    this.native.graphLaunch(exec, stream);
  }
  destroyGraphExec(exec: CudaGraphExec): void {
    this.native.graphExecDestroy(exec);
  }
  destroyGraph(graph: CudaGraph): void {
    this.native.graphDestroy(graph);
  }
}

/** True for the addon's out-of-memory errors (code CUDA_ERROR_OUT_OF_MEMORY). */
export function isOutOfMemory(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === "CUDA_ERROR_OUT_OF_MEMORY";
}
