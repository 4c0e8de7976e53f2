// The Device over runtime/cuda: one device, one created stream (capturable, unlike the legacy
// one), memory from the caching allocator, PTX JIT-compiled by the driver, events for timing, and
// CUDA graphs for replaying a whole launch sequence. Faults of a kernel surface at the next
// synchronising call (download, synchronize); `syncEachLaunch` makes every launch wait, so the
// executor can name the launch that failed.

import { CachingAllocator, driverMemory } from "../cuda/allocator.ts";
import {
  type CudaDriver,
  type CudaModule,
  type DevicePtr,
  type KernelFunction,
  requireCuda,
  type Stream,
} from "../cuda/driver.ts";
import type { KernelArg } from "../cuda/kernel-args.ts";
import {
  alignUp,
  type Device,
  type DeviceAddress,
  type DeviceArg,
  type DeviceGraph,
  type DeviceKernel,
  type DeviceModule,
  type DeviceTimer,
  emptyProfile,
  type LabelProfile,
  type LaunchShape,
} from "./device.ts";

interface CudaDeviceModule extends DeviceModule {
  readonly handle: CudaModule;
}

interface CudaKernel extends DeviceKernel {
  readonly fn: KernelFunction;
}

export interface CudaDeviceOptions {
  /** Device ordinal (default 0, or LOCAL_RANK's device when the caller passes it). */
  readonly index?: number;
}

const DEFAULT_DYNAMIC_SHARED_LIMIT = 48 * 1024;

function toKernelArg(a: DeviceArg): KernelArg {
  switch (a.kind) {
    case "ptr":
      return a.address;
    case "i32":
      return { i32: a.value };
    case "u32":
      return { u32: a.value };
    case "f32":
      return { f32: a.value };
    case "i64":
      return { i64: BigInt(a.value) };
    case "u64":
      return { u64: BigInt(a.value) };
  }
}

export class CudaDevice implements Device {
  readonly kind = "cuda" as const;
  readonly description: string;
  readonly allocator: CachingAllocator;
  readonly stream: Stream;
  private readonly labels = new Map<string, LabelProfile>();
  private readonly modules: CudaModule[] = [];
  private capturing = false;

  private constructor(
    readonly driver: CudaDriver,
    readonly index: number,
  ) {
    driver.setDevice(index);
    const info = driver.device(index);
    this.description = `${info.name} (sm_${info.ccMajor}${info.ccMinor}, ${(info.totalMemBytes / 2 ** 30).toFixed(1)} GiB, driver ${driver.driverVersion()})`;
    this.allocator = new CachingAllocator(driverMemory(driver));
    this.stream = driver.createStream();
  }

  /** The device, or the UserError `--device cuda` prints where there is no driver. */
  static open(options: CudaDeviceOptions = {}): CudaDevice {
    return new CudaDevice(requireCuda(), options.index ?? 0);
  }

  alloc(bytes: number): DeviceAddress {
    return this.allocator.allocate(alignUp(Math.max(bytes, 1))).ptr;
  }

  free(address: DeviceAddress): void {
    this.allocator.free(address as DevicePtr);
  }

  upload(address: DeviceAddress, data: ArrayBufferView): Promise<void> {
    return this.driver.copyToDevice(address as DevicePtr, data, this.stream);
  }

  download(address: DeviceAddress, into: ArrayBufferView): Promise<void> {
    return this.driver.copyFromDevice(into, address as DevicePtr, this.stream);
  }

  copy(dst: DeviceAddress, src: DeviceAddress, bytes: number): void {
    this.driver.copyDeviceAsync(dst as DevicePtr, src as DevicePtr, bytes, this.stream);
  }

  fill(address: DeviceAddress, bytes: number, byte: number): void {
    this.driver.memset(address as DevicePtr, byte, bytes, this.stream);
  }

  async loadModule(name: string, ptx: string): Promise<DeviceModule> {
    let handle: CudaModule;
    try {
      handle = (await this.driver.loadModule(ptx)).module;
    } catch (e) {
      throw new Error(`loading module ${name} (driver JIT of its PTX): ${(e as Error).message}`, { cause: e });
    }
    this.modules.push(handle);
    const m: CudaDeviceModule = { name, handle };
    return m;
  }

  kernel(module: DeviceModule, entry: string, maxDynamicSharedBytes = 0): DeviceKernel {
    const m = module as CudaDeviceModule;
    const fn = this.driver.getFunction(m.handle, entry);
    // Done once here, not per launch: setting attributes is not a stream operation to capture.
    if (maxDynamicSharedBytes > DEFAULT_DYNAMIC_SHARED_LIMIT)
      this.driver.setFuncAttribute(fn, "maxDynamicSharedSizeBytes", maxDynamicSharedBytes);
    const k: CudaKernel = { module: m.name, name: entry, fn };
    return k;
  }

  launch(kernel: DeviceKernel, shape: LaunchShape, args: readonly DeviceArg[]): void {
    const k = kernel as CudaKernel;
    const t0 = performance.now();
    this.driver.launch(
      k.fn,
      { grid: shape.grid, block: shape.block, sharedBytes: shape.dynamicSharedBytes, stream: this.stream },
      args.map(toKernelArg),
    );
    if (this.capturing) return;
    let p = this.labels.get(shape.label);
    if (!p) {
      p = emptyProfile();
      this.labels.set(shape.label, p);
    }
    p.launches++;
    p.hostMs += performance.now() - t0;
  }

  synchronize(): Promise<void> {
    return this.driver.streamSynchronize(this.stream);
  }

  async capture(record: () => void): Promise<DeviceGraph> {
    // Capture records enqueued work without running it; the stream must be idle and nothing on
    // this thread may allocate meanwhile ("threadLocal" mode makes the driver enforce it).
    await this.synchronize();
    this.capturing = true;
    this.driver.beginCapture(this.stream, "threadLocal");
    try {
      record();
    } catch (e) {
      this.driver.destroyGraph(this.driver.endCapture(this.stream));
      this.capturing = false;
      throw e;
    }
    const graph = this.driver.endCapture(this.stream);
    this.capturing = false;
    const exec = this.driver.instantiateGraph(graph);
    return {
      launch: () => this.driver.launchGraph(exec, this.stream),
      dispose: () => {
        this.driver.destroyGraphExec(exec);
        this.driver.destroyGraph(graph);
      },
    };
  }

  timer(): DeviceTimer {
    const start = this.driver.createEvent(true);
    const end = this.driver.createEvent(true);
    this.driver.recordEvent(start, this.stream);
    return {
      stop: async () => {
        this.driver.recordEvent(end, this.stream);
        await this.driver.eventSynchronize(end);
        const ms = this.driver.elapsedMs(start, end);
        this.driver.destroyEvent(start);
        this.driver.destroyEvent(end);
        return ms;
      },
    };
  }

  profile(): Map<string, LabelProfile> {
    return new Map(this.labels);
  }

  resetProfile(): void {
    this.labels.clear();
  }

  memoryStats(): { reservedBytes: number; peakReservedBytes: number } {
    const s = this.allocator.stats();
    return { reservedBytes: s.reservedBytes, peakReservedBytes: s.peakReservedBytes };
  }

  async dispose(): Promise<void> {
    await this.synchronize();
    for (const m of this.modules.splice(0)) this.driver.unloadModule(m);
    this.allocator.emptyCache();
    this.driver.destroyStream(this.stream);
  }
}
