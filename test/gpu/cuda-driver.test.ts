// runtime/cuda on a real GPU: skipped where no driver is found (CI). Run it on a GPU machine with
// `npx vitest run test/gpu/cuda-driver.test.ts` (see runtime/cuda/README.md). Set PTC_NCCL_LIBRARY
// to a libnccl.so.2 for the NCCL part if it is not on the loader's path.
//
// Driver API facts these tests rely on (cuda.h, CUDA 13.0; checked there, see native/cuda_api.h):
// cuLaunchKernel(f, gridDimX..Z, blockDimX..Z, sharedMemBytes, hStream, kernelParams, extra), with
// kernelParams an array of pointers to each argument; launches asking for more than 48 KiB of
// dynamic shared memory need CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (8) raised first;
// cuStreamBeginCapture_v2(stream, mode) cannot capture the legacy stream, so the tests capture a
// created stream; cuGraphInstantiateWithFlags(&exec, graph, 0) then cuGraphLaunch(exec, stream).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CachingAllocator, DeviceOutOfMemoryError, driverMemory } from "../../runtime/cuda/allocator.ts";
import { formatDevices, listDevices } from "../../runtime/cuda/devices-command.ts";
import type { CudaDriver, KernelFunction, Stream } from "../../runtime/cuda/driver.ts";
import * as cuda from "../../runtime/cuda/driver.ts";
import { initCommunicator, ncclStatus, ncclVersion } from "../../runtime/cuda/nccl.ts";
import { TcpStore } from "../../runtime/cuda/store.ts";
import { SMEM_REVERSE_PTX, VEC_ADD_PTX } from "./cuda-ptx.ts";

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;
const gpu = cuda.available();

function ramp(n: number, f: (i: number) => number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => f(i));
}

describe.skipIf(!gpu)("CUDA driver on a GPU", () => {
  let d: CudaDriver;
  let stream: Stream;
  let vecAdd: KernelFunction;

  beforeAll(async () => {
    d = cuda.requireCuda();
    d.setDevice(0);
    stream = d.createStream();
    const { module } = await d.loadModule(VEC_ADD_PTX);
    vecAdd = d.getFunction(module, "vec_add");
  });
  afterAll(() => {
    if (stream !== undefined) d.destroyStream(stream);
  });

  const launchAdd = (a: bigint, b: bigint, c: bigint, n: number, s: Stream = stream) =>
    d.launch(vecAdd, { grid: [Math.ceil(n / 256), 1, 1], block: [256, 1, 1], stream: s }, [a, b, c, { u32: n }]);

  it("lists the device with its properties", () => {
    const report = listDevices();
    console.log(formatDevices(report));
    expect(report.available).toBe(true);
    expect(d.deviceCount()).toBeGreaterThan(0);
    const dev = d.device(0);
    expect(dev.name).toMatch(/\S/);
    expect(dev.ccMajor).toBeGreaterThanOrEqual(8);
    expect(dev.computeCapability).toBe(`${dev.ccMajor}.${dev.ccMinor}`);
    expect(dev.totalMemBytes).toBeGreaterThan(1024 * MiB);
    expect(dev.smCount).toBeGreaterThan(0);
    expect(dev.maxSharedMemoryPerBlockOptin).toBeGreaterThan(64 * 1024);
    expect(d.driverVersion()).toMatch(/^\d+\.\d+$/);
    const mem = d.memInfo();
    expect(mem.total).toBeGreaterThan(0);
    expect(mem.total).toBeLessThanOrEqual(dev.totalMemBytes);
    expect(mem.free).toBeLessThanOrEqual(mem.total);
  });

  it("copies a buffer to the device and back, and clears it", async () => {
    const n = 1 << 20;
    const host = ramp(n, (i) => i * 0.5 - 7);
    const p = d.memAlloc(n * 4);
    try {
      await d.copyToDevice(p, host);
      const back = new Float32Array(n);
      await d.copyFromDevice(back, p);
      expect(back).toEqual(host);
      d.memset(p, 0, n * 4, stream);
      await d.copyFromDevice(back, p, stream);
      expect(back.every((x) => x === 0)).toBe(true);
    } finally {
      d.memFree(p);
    }
  });

  it("turns an impossible allocation into a readable out-of-memory error", () => {
    let err: unknown;
    try {
      d.memAlloc(4 * TiB);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/^cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY \(.+\) while allocating 4\.00 TiB$/);
    expect(cuda.isOutOfMemory(err)).toBe(true);
  });

  it("copies through pinned memory in stream order and refuses pageable memory there", async () => {
    const n = 4096;
    const src = new Float32Array(d.hostAlloc(n * 4));
    src.set(ramp(n, (i) => i + 0.25));
    const dst = new Float32Array(d.hostAlloc(n * 4));
    const p = d.memAlloc(n * 4);
    try {
      d.copyToDeviceAsync(p, src, stream);
      d.copyFromDeviceAsync(dst, p, stream);
      await d.streamSynchronize(stream);
      expect(dst).toEqual(src);
      expect(d.streamDone(stream)).toBe(true);
      expect(() => d.copyToDeviceAsync(p, new Float32Array(n), stream)).toThrow(/needs pinned host memory/);
    } finally {
      d.memFree(p);
    }
  });

  it("JIT-loads PTX, reads kernel attributes and launches it", async () => {
    expect(d.funcAttribute(vecAdd, "numRegs")).toBeGreaterThan(0);
    expect(d.funcAttribute(vecAdd, "maxThreadsPerBlock")).toBeGreaterThanOrEqual(256);
    const n = 100_000;
    const [pa, pb, pc] = [0, 1, 2].map(() => d.memAlloc(n * 4));
    try {
      await d.copyToDevice(
        pa,
        ramp(n, (i) => i),
        stream,
      );
      await d.copyToDevice(
        pb,
        ramp(n, (i) => 2 * i + 1),
        stream,
      );
      launchAdd(pa, pb, pc, n);
      const c = new Float32Array(n);
      await d.copyFromDevice(c, pc, stream);
      expect(c).toEqual(ramp(n, (i) => 3 * i + 1));
    } finally {
      for (const p of [pa, pb, pc]) d.memFree(p);
    }
  });

  it("reports a PTX error with the JIT log", async () => {
    const broken = VEC_ADD_PTX.replace("add.f32 %f3, %f1, %f2;", "add.f32 %f3, %f1, %nosuchreg;");
    const err = await d.loadModule(broken).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/^cuModuleLoadDataEx failed: CUDA_ERROR_\w+ .*while loading a module/);
    expect((err as Error).message).toMatch(/nosuchreg/); // the JIT's error log is part of the message
  });

  it("launches with more than 48 KiB of dynamic shared memory after raising the limit", async () => {
    const { module } = await d.loadModule(SMEM_REVERSE_PTX);
    const fn = d.getFunction(module, "smem_reverse");
    const shared = 64 * 1024;
    const threads = 256;
    const offset = shared - threads * 4; // the top 1 KiB: past the 48 KiB default
    const out = d.memAlloc(threads * 4);
    const config = { grid: [1, 1, 1], block: [threads, 1, 1], sharedBytes: shared, stream } as const;
    try {
      expect(() => d.launch(fn, config, [out, { u32: offset }])).toThrow(/^cuLaunchKernel failed: CUDA_ERROR_\w+/);
      d.setFuncAttribute(fn, "maxDynamicSharedSizeBytes", shared);
      expect(d.funcAttribute(fn, "maxDynamicSharedSizeBytes")).toBe(shared);
      d.launch(fn, config, [out, { u32: offset }]);
      const res = new Float32Array(threads);
      await d.copyFromDevice(res, out, stream);
      expect(res).toEqual(ramp(threads, (t) => threads - 1 - t));
    } finally {
      d.memFree(out);
      d.unloadModule(module);
    }
  });

  it("times kernels with events", async () => {
    const n = 1 << 20;
    const [px, py] = [0, 1].map(() => d.memAlloc(n * 4));
    const start = d.createEvent();
    const end = d.createEvent();
    try {
      d.memset(px, 0, n * 4, stream);
      d.memset(py, 0, n * 4, stream);
      d.recordEvent(start, stream);
      for (let i = 0; i < 20; i++) launchAdd(py, px, py, n);
      d.recordEvent(end, stream);
      await d.eventSynchronize(end);
      const ms = d.elapsedMs(start, end);
      console.log(`20 vec_add launches over ${n} floats: ${ms.toFixed(3)} ms`);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(10_000);
    } finally {
      d.destroyEvent(start);
      d.destroyEvent(end);
      for (const p of [px, py]) d.memFree(p);
    }
  });

  it("captures launches as a CUDA graph and replays it", async () => {
    const n = 4096;
    const [px, py] = [0, 1].map(() => d.memAlloc(n * 4));
    try {
      await d.copyToDevice(
        px,
        ramp(n, () => 1),
        stream,
      );
      await d.copyToDevice(
        py,
        ramp(n, () => 0),
        stream,
      );
      d.beginCapture(stream);
      for (let i = 0; i < 3; i++) launchAdd(py, px, py, n); // y += x, three times
      const graph = d.endCapture(stream);
      const y = new Float32Array(n);
      await d.copyFromDevice(y, py, stream);
      expect(y.every((v) => v === 0)).toBe(true); // capturing ran nothing
      const exec = d.instantiateGraph(graph);
      d.launchGraph(exec, stream);
      d.launchGraph(exec, stream);
      await d.copyFromDevice(y, py, stream);
      expect(y.every((v) => v === 6)).toBe(true);
      d.destroyGraphExec(exec);
      d.destroyGraph(graph);
    } finally {
      for (const p of [px, py]) d.memFree(p);
    }
  });

  it("caches device blocks over the driver and explains an out-of-memory request", () => {
    const alloc = new CachingAllocator(driverMemory(d));
    const a = alloc.allocate(10 * MiB);
    alloc.free(a);
    const b = alloc.allocate(9 * MiB);
    expect(b.ptr).toBe(a.ptr);
    expect(alloc.stats()).toMatchObject({ rawAllocs: 1, cacheHits: 1, allocatedBytes: 10 * MiB });
    let err: unknown;
    try {
      alloc.allocate(4 * TiB);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceOutOfMemoryError);
    expect((err as Error).message).toMatch(
      /^CUDA out of memory: tried to allocate 4\.00 TiB; 10\.00 MiB is in use .* the device has/,
    );
    alloc.free(b);
    expect(alloc.emptyCache()).toBe(10 * MiB);
  });

  it("synchronizes the whole device off the JS thread", async () => {
    // n = 0: every thread exits at once, so null pointers are never read.
    d.launch(vecAdd, { grid: [1, 1, 1], block: [32, 1, 1], stream }, [0n, 0n, 0n, { u32: 0 }]);
    await d.synchronize();
  });
});

const ncclUsable = gpu && ncclStatus(cuda.requireCuda()).available;

describe.skipIf(!ncclUsable)("NCCL with one rank", () => {
  it("runs every collective through a communicator made over the TCP store", async () => {
    const d = cuda.requireCuda();
    d.setDevice(0);
    console.log(`NCCL ${ncclVersion(d)}`);
    const stream = d.createStream();
    const store = await TcpStore.create({
      host: "127.0.0.1",
      port: 0,
      isServer: true,
      listenHost: "127.0.0.1",
      timeoutMs: 60_000,
    });
    const comm = await initCommunicator(d, store, 0, 1, { timeoutMs: 120_000 });
    const n = 1024;
    const data = ramp(n, (i) => i * 0.5);
    const [send, r1, r2, r3, r4] = [0, 1, 2, 3, 4].map(() => d.memAlloc(n * 4));
    try {
      await d.copyToDevice(send, data, stream);
      await comm.allReduce(send, r1, n, "float32", stream);
      await comm.run(
        [
          { op: "allGather", send, recv: r2, sendCount: n, dtype: "float32" },
          { op: "reduceScatter", send, recv: r3, recvCount: n, dtype: "float32", redop: "max" },
          { op: "broadcast", send, recv: r4, count: n, dtype: "float32", root: 0 },
        ],
        stream,
      );
      await comm.wait(stream, 60_000);
      for (const r of [r1, r2, r3, r4]) {
        const out = new Float32Array(n);
        await d.copyFromDevice(out, r, stream);
        expect(out).toEqual(data); // one rank: every collective is a copy
      }
    } finally {
      await comm.destroy();
      for (const p of [send, r1, r2, r3, r4]) d.memFree(p);
      d.destroyStream(stream);
      await store.close();
    }
  });
});
