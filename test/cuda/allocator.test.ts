import { describe, expect, it } from "vitest";
import { UserError } from "../../compiler/ir/index.ts";
import { CachingAllocator, DeviceOutOfMemoryError, type RawDeviceMemory } from "../../runtime/cuda/allocator.ts";
import type { DevicePtr } from "../../runtime/cuda/driver.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A device with `capacity` bytes that hands out distinct fake addresses and fails like cuMemAlloc. */
class FakeDevice implements RawDeviceMemory {
  used = 0;
  allocs = 0;
  frees = 0;
  private next = 0x7f0000000000n;
  private readonly sizes = new Map<DevicePtr, number>();
  constructor(readonly capacity: number) {}
  alloc(bytes: number): DevicePtr {
    if (this.used + bytes > this.capacity) {
      const e = new Error("cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)") as Error & { code: string };
      e.code = "CUDA_ERROR_OUT_OF_MEMORY";
      throw e;
    }
    const ptr = this.next as DevicePtr;
    this.next += BigInt(bytes) + 4096n;
    this.sizes.set(ptr, bytes);
    this.used += bytes;
    this.allocs++;
    return ptr;
  }
  free(ptr: DevicePtr): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) throw new Error("double free in the fake device");
    this.sizes.delete(ptr);
    this.used -= size;
    this.frees++;
  }
  memInfo() {
    return { free: this.capacity - this.used, total: this.capacity };
  }
}

describe("CachingAllocator", () => {
  it("rounds small requests to 512 B and large ones to 2 MiB", () => {
    const a = new CachingAllocator(new FakeDevice(GiB));
    expect(a.roundSize(0)).toBe(512);
    expect(a.roundSize(1)).toBe(512);
    expect(a.roundSize(512)).toBe(512);
    expect(a.roundSize(513)).toBe(1024);
    expect(a.roundSize(MiB)).toBe(MiB);
    expect(a.roundSize(MiB + 1)).toBe(2 * MiB);
    expect(a.roundSize(5 * MiB)).toBe(6 * MiB);
  });

  it("reuses a freed block of the same size class without calling the driver", () => {
    const dev = new FakeDevice(GiB);
    const a = new CachingAllocator(dev);
    const x = a.allocate(1000); // class 1024
    a.free(x);
    const y = a.allocate(700); // also class 1024
    expect(y.ptr).toBe(x.ptr);
    expect(dev.allocs).toBe(1);
    const z = a.allocate(1500); // class 1536: a new block
    expect(z.ptr).not.toBe(x.ptr);
    expect(dev.allocs).toBe(2);
    expect(a.stats()).toMatchObject({ rawAllocs: 2, cacheHits: 1, liveBlocks: 2, cachedBlocks: 0 });
  });

  it("keeps statistics of allocated, reserved and peak bytes", () => {
    const a = new CachingAllocator(new FakeDevice(GiB));
    const b1 = a.allocate(3 * MiB); // 4 MiB
    const b2 = a.allocate(100); // 512 B
    expect(a.stats()).toMatchObject({
      allocatedBytes: 4 * MiB + 512,
      requestedBytes: 3 * MiB + 100,
      reservedBytes: 4 * MiB + 512,
      cachedBytes: 0,
    });
    a.free(b1);
    expect(a.stats()).toMatchObject({
      allocatedBytes: 512,
      reservedBytes: 4 * MiB + 512,
      cachedBytes: 4 * MiB,
      peakAllocatedBytes: 4 * MiB + 512,
    });
    a.free(b2);
    const released = a.emptyCache();
    expect(released).toBe(4 * MiB + 512);
    expect(a.stats()).toMatchObject({
      allocatedBytes: 0,
      reservedBytes: 0,
      cachedBytes: 0,
      peakReservedBytes: 4 * MiB + 512,
      rawFrees: 2,
    });
  });

  it("a repeated training step stops reaching the driver after the first", () => {
    const dev = new FakeDevice(GiB);
    const a = new CachingAllocator(dev);
    const step = () => {
      const blocks = [12 * MiB, 300, 4096, 12 * MiB, 7 * MiB].map((n) => a.allocate(n));
      for (const b of blocks.reverse()) a.free(b);
    };
    step();
    const after1 = dev.allocs;
    for (let i = 0; i < 5; i++) step();
    expect(dev.allocs).toBe(after1);
    expect(a.stats().cacheHits).toBe(25);
  });

  it("empties the cache and retries once when the device is out of memory", () => {
    const dev = new FakeDevice(10 * MiB);
    const a = new CachingAllocator(dev);
    a.free(a.allocate(8 * MiB)); // 8 MiB cached
    const big = a.allocate(6 * MiB); // needs the cached 8 MiB released first
    expect(big.size).toBe(6 * MiB);
    expect(a.stats()).toMatchObject({ oomRetries: 1, reservedBytes: 6 * MiB, cachedBytes: 0 });
    expect(dev.used).toBe(6 * MiB);
  });

  it("says what was asked for and what is in use when memory runs out", () => {
    const dev = new FakeDevice(4 * GiB);
    const a = new CachingAllocator(dev);
    a.allocate(3 * GiB);
    let err: unknown;
    try {
      a.allocate(2 * GiB);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceOutOfMemoryError);
    expect(err).toBeInstanceOf(UserError);
    const oom = err as DeviceOutOfMemoryError;
    expect(oom.requestedBytes).toBe(2 * GiB);
    expect(oom.message).toBe(
      "CUDA out of memory: tried to allocate 2.00 GiB; 3.00 GiB is in use by 1 live block(s) and 3.00 GiB is reserved by " +
        "ptc's allocator; the device has 1.00 GiB free of 4.00 GiB " +
        "(reduce the micro-batch, enable activation checkpointing, or shard the optimizer state)",
    );
    expect(a.stats().allocatedBytes).toBe(3 * GiB);
  });

  it("passes other driver errors through and rejects bad frees", () => {
    const a = new CachingAllocator({
      alloc: () => {
        throw new Error("cuMemAlloc failed: CUDA_ERROR_ILLEGAL_ADDRESS");
      },
      free: () => {},
    });
    expect(() => a.allocate(10)).toThrow("CUDA_ERROR_ILLEGAL_ADDRESS");
    const b = new CachingAllocator(new FakeDevice(GiB));
    const blk = b.allocate(10);
    b.free(blk);
    expect(() => b.free(blk)).toThrow(/does not own or already freed/);
    expect(() => b.allocate(-1)).toThrow(RangeError);
  });
});
