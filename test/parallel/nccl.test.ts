// NcclCollectives on a real GPU with one rank (skipped without a driver and NCCL, as in CI): the
// adapter's plumbing (counts, dtypes, in-place pointers, "mean" as ncclAvg, subgroups, barrier,
// flush) against NCCL itself. With one rank every collective is a copy, so the expected values are
// the inputs; several ranks need several GPUs (NCCL refuses two ranks on one device).
import { describe, expect, it } from "vitest";
import * as cuda from "../../runtime/cuda/driver.ts";
import { ncclStatus } from "../../runtime/cuda/nccl.ts";
import { TcpStore } from "../../runtime/cuda/store.ts";
import { type DeviceBuffer, NcclCollectives } from "../../runtime/parallel/index.ts";

const usable = cuda.available() && ncclStatus(cuda.requireCuda()).available;

describe.skipIf(!usable)("NcclCollectives with one rank", () => {
  it("runs every collective of the interface on device buffers", async () => {
    const d = cuda.requireCuda();
    d.setDevice(0);
    const stream = d.createStream();
    const store = await TcpStore.create({
      host: "127.0.0.1",
      port: 0,
      isServer: true,
      listenHost: "127.0.0.1",
      timeoutMs: 60_000,
    });
    const world = await NcclCollectives.create({ driver: d, store, rank: 0, worldSize: 1, stream, timeoutMs: 120_000 });
    const n = 777;
    const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
    const buf = (): DeviceBuffer => ({ ptr: d.memAlloc(n * 4), count: n, dtype: "float32" });
    const [a, b, c] = [buf(), buf(), buf()];
    const read = async (x: DeviceBuffer) => {
      await world.flush();
      const out = new Float32Array(x.count);
      await d.copyFromDevice(out, x.ptr, stream);
      return out;
    };
    try {
      expect([world.rank, world.size, world.ranks]).toEqual([0, 1, [0]]);
      await d.copyToDevice(a.ptr, data, stream);
      await world.allReduce(a, "sum");
      await world.allReduce(a, "mean");
      expect(await read(a)).toEqual(data);
      await world.reduceScatter(a, b);
      expect(await read(b)).toEqual(data);
      await world.allGather(b, c);
      expect(await read(c)).toEqual(data);
      await world.broadcast(c, 0);
      await world.barrier();
      expect(await read(c)).toEqual(data);
      expect(await world.subgroup([0])).toBe(world);
      expect(() => world.reduceScatter({ ...a, count: n + 1 }, b)).toThrow("reduceScatter: the full buffer has 778 elements");
      expect(() => world.allGather(b, { ...c, dtype: "bfloat16" })).toThrow("allGather: buffers are float32 and bfloat16");
    } finally {
      await world.close();
      for (const x of [a, b, c]) d.memFree(x.ptr);
      d.destroyStream(stream);
      await store.close();
    }
  });
});
