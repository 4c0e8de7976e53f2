// A caching device allocator: cuMemAlloc/cuMemFree are slow and synchronise the device, so freed
// blocks are kept and handed out again to requests of the same size class. Sizes round up to 512 B
// granules (small requests) or 2 MiB granules (large ones), so a training step that asks for the
// same tensors every iteration stops calling the driver after its first step.
//
// Blocks are stream-ordered on one compute stream: a block freed here may be reused by the next
// kernel on that stream without waiting. Using a block on a second stream needs an event first.
import { UserError } from "../../compiler/ir/index.ts";
import type { CudaDriver, DevicePtr } from "./driver.ts";
import { isOutOfMemory } from "./driver.ts";

/** The raw allocator underneath (the driver, or a fake in tests). */
export interface RawDeviceMemory {
  alloc(bytes: number): DevicePtr;
  free(ptr: DevicePtr): void;
  /** Free and total device memory, for the out-of-memory message. */
  memInfo?(): { free: number; total: number };
}

/** The driver as a RawDeviceMemory (the device must already be set). */
export function driverMemory(driver: CudaDriver): RawDeviceMemory {
  return { alloc: (bytes) => driver.memAlloc(bytes), free: (ptr) => driver.memFree(ptr), memInfo: () => driver.memInfo() };
}

export interface DeviceBlock {
  readonly ptr: DevicePtr;
  /** Bytes reserved for the block (the rounded size). */
  readonly size: number;
  /** Bytes the caller asked for. */
  readonly requested: number;
}

export interface AllocatorStats {
  /** Bytes in blocks handed out and not yet freed (rounded sizes). */
  allocatedBytes: number;
  /** Bytes the caller asked for in live blocks. */
  requestedBytes: number;
  /** Bytes held from the driver: allocated plus cached. */
  reservedBytes: number;
  /** Bytes in free blocks kept for reuse. */
  cachedBytes: number;
  peakAllocatedBytes: number;
  peakReservedBytes: number;
  /** cuMemAlloc calls made (cache misses that reached the driver). */
  rawAllocs: number;
  rawFrees: number;
  /** Requests served from the cache. */
  cacheHits: number;
  liveBlocks: number;
  cachedBlocks: number;
  /** Out-of-memory errors that emptying the cache resolved. */
  oomRetries: number;
}

export interface AllocatorOptions {
  /** Requests up to this many bytes are "small" and round to smallGranule (default 1 MiB). */
  smallLimit?: number;
  smallGranule?: number;
  largeGranule?: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let u = 0;
  let x = bytes;
  while (x >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return u === 0 ? `${x} B` : `${x.toFixed(2)} ${units[u]}`;
}

/** Raised when the device cannot hold a request even after the cache was emptied. */
export class DeviceOutOfMemoryError extends UserError {
  constructor(
    readonly requestedBytes: number,
    readonly stats: AllocatorStats,
    deviceFreeBytes?: number,
    deviceTotalBytes?: number,
  ) {
    const device =
      deviceTotalBytes !== undefined
        ? `; the device has ${formatBytes(deviceFreeBytes ?? 0)} free of ${formatBytes(deviceTotalBytes)}`
        : "";
    super(
      `CUDA out of memory: tried to allocate ${formatBytes(requestedBytes)}; ${formatBytes(stats.allocatedBytes)} is in use by ` +
        `${stats.liveBlocks} live block(s) and ${formatBytes(stats.reservedBytes)} is reserved by ptc's allocator${device} ` +
        "(reduce the micro-batch, enable activation checkpointing, or shard the optimizer state)",
    );
    this.name = "DeviceOutOfMemoryError";
  }
}

export class CachingAllocator {
  private readonly smallLimit: number;
  private readonly smallGranule: number;
  private readonly largeGranule: number;
  /** Free blocks by rounded size. */
  private readonly cache = new Map<number, DevicePtr[]>();
  private readonly live = new Map<DevicePtr, DeviceBlock>();
  private readonly s: AllocatorStats = {
    allocatedBytes: 0,
    requestedBytes: 0,
    reservedBytes: 0,
    cachedBytes: 0,
    peakAllocatedBytes: 0,
    peakReservedBytes: 0,
    rawAllocs: 0,
    rawFrees: 0,
    cacheHits: 0,
    liveBlocks: 0,
    cachedBlocks: 0,
    oomRetries: 0,
  };

  constructor(
    private readonly raw: RawDeviceMemory,
    options: AllocatorOptions = {},
  ) {
    this.smallLimit = options.smallLimit ?? 1 * MiB;
    this.smallGranule = options.smallGranule ?? 512;
    this.largeGranule = options.largeGranule ?? 2 * MiB;
  }

  /** The size class of a request: the rounded size a block for it has. */
  roundSize(bytes: number): number {
    const n = Math.max(1, bytes);
    const granule = n <= this.smallLimit ? this.smallGranule : this.largeGranule;
    return Math.ceil(n / granule) * granule;
  }

  allocate(bytes: number): DeviceBlock {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`cannot allocate ${bytes} bytes`);
    const size = this.roundSize(bytes);
    const cached = this.cache.get(size);
    let ptr = cached?.pop();
    if (ptr !== undefined) {
      this.s.cacheHits++;
      this.s.cachedBytes -= size;
      this.s.cachedBlocks--;
    } else {
      ptr = this.rawAlloc(size, bytes);
    }
    const block: DeviceBlock = { ptr, size, requested: bytes };
    this.live.set(ptr, block);
    this.s.allocatedBytes += size;
    this.s.requestedBytes += bytes;
    this.s.liveBlocks++;
    this.s.peakAllocatedBytes = Math.max(this.s.peakAllocatedBytes, this.s.allocatedBytes);
    return block;
  }

  /** Returns a block to the cache (the device memory stays reserved). */
  free(block: DeviceBlock | DevicePtr): void {
    const ptr = typeof block === "bigint" ? block : block.ptr;
    const b = this.live.get(ptr);
    if (!b) throw new Error(`free of a device pointer this allocator does not own or already freed: 0x${ptr.toString(16)}`);
    this.live.delete(ptr);
    this.s.allocatedBytes -= b.size;
    this.s.requestedBytes -= b.requested;
    this.s.liveBlocks--;
    let list = this.cache.get(b.size);
    if (!list) {
      list = [];
      this.cache.set(b.size, list);
    }
    list.push(ptr);
    this.s.cachedBytes += b.size;
    this.s.cachedBlocks++;
  }

  /** Gives every cached block back to the driver; returns the bytes released. */
  emptyCache(): number {
    let released = 0;
    for (const [size, list] of this.cache) {
      for (const ptr of list) {
        this.raw.free(ptr);
        this.s.rawFrees++;
        released += size;
      }
    }
    this.cache.clear();
    this.s.reservedBytes -= released;
    this.s.cachedBytes = 0;
    this.s.cachedBlocks = 0;
    return released;
  }

  stats(): AllocatorStats {
    return { ...this.s };
  }

  private rawAlloc(size: number, requested: number): DevicePtr {
    let ptr: DevicePtr;
    try {
      ptr = this.raw.alloc(size);
    } catch (e) {
      if (!isOutOfMemory(e)) throw e;
      // Cached blocks of other sizes may be what stands in the way.
      if (this.emptyCache() === 0) this.throwOom(requested);
      try {
        ptr = this.raw.alloc(size);
        this.s.oomRetries++;
      } catch (e2) {
        if (!isOutOfMemory(e2)) throw e2;
        this.throwOom(requested);
      }
    }
    this.s.rawAllocs++;
    this.s.reservedBytes += size;
    this.s.peakReservedBytes = Math.max(this.s.peakReservedBytes, this.s.reservedBytes);
    return ptr;
  }

  private throwOom(requested: number): never {
    let info: { free: number; total: number } | undefined;
    try {
      info = this.raw.memInfo?.();
    } catch {
      info = undefined;
    }
    throw new DeviceOutOfMemoryError(requested, this.stats(), info?.free, info?.total);
  }
}
