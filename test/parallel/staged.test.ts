// StagedCollectives: the device-buffer collectives of the emulator test path (download ->
// CpuCollectives -> upload), two ranks in this process, each with its own PTX emulator device.
// f32 results are CpuCollectives' member-order sums exactly; bf16 buffers are gathered and
// broadcast bit for bit; sizes and dtypes are checked as NcclCollectives checks them.
import { describe, expect, it } from "vitest";
import { bf16BitsToF32, f32ToBf16Bits } from "../../runtime/cpu/bf16.ts";
import { EmuDevice } from "../../runtime/exec/emu-device.ts";
import { type DeviceBuffer, reduceInMemberOrder, StagedCollectives } from "../../runtime/parallel/index.ts";
import { world } from "../helpers/cpu-world.ts";

const values = (rank: number, n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + rank) * (rank + 1.3));

describe("StagedCollectives (two ranks, each on its own emulator device)", () => {
  it("all-reduce, reduce-scatter, all-gather and broadcast of f32 and bf16 device buffers", async () => {
    const ranks = await world(2);
    const n = 1030;
    const sides = ranks.map((host) => {
      const device = new EmuDevice();
      const buf = (count: number, dtype: "float32" | "bfloat16"): DeviceBuffer => ({
        ptr: device.alloc(count * (dtype === "float32" ? 4 : 2)) as DeviceBuffer["ptr"],
        count,
        dtype,
      });
      return { host, device, coll: new StagedCollectives(host, device), buf };
    });
    const results = await Promise.all(
      sides.map(async ({ host, device, coll, buf }) => {
        const r = host.rank;
        const a = buf(n, "float32");
        await device.upload(a.ptr, values(r, n));
        await coll.allReduce(a, "sum");
        const sum = new Float32Array(n);
        await device.download(a.ptr, sum);
        const part = buf(n / 2, "float32");
        await device.upload(a.ptr, values(r, n));
        await coll.reduceScatter(a, part, "sum");
        const mine = new Float32Array(n / 2);
        await device.download(part.ptr, mine);
        // bf16: my shard's bits, gathered; then rank 1's whole buffer broadcast.
        const shard = buf(n / 2, "bfloat16");
        const full = buf(n, "bfloat16");
        await device.upload(shard.ptr, f32ToBf16Bits(values(r, n / 2)));
        await coll.allGather(shard, full);
        const gathered = new Uint16Array(n);
        await device.download(full.ptr, gathered);
        await coll.broadcast(full, 1);
        const cast = new Uint16Array(n);
        await device.download(full.ptr, cast);
        expect(() => coll.allGather(shard, buf(n + 2, "bfloat16"))).toThrow("allGather: the full buffer has 1032 elements");
        expect(() => coll.reduceScatter(a, full)).toThrow("reduceScatter: buffers are float32 and bfloat16");
        await coll.flush();
        return { sum, mine, gathered, cast };
      }),
    );
    const want = reduceInMemberOrder([values(0, n), values(1, n)], "sum");
    const bf = (r: number) => f32ToBf16Bits(values(r, n / 2));
    for (const [r, got] of results.entries()) {
      expect(got.sum).toEqual(want);
      expect(got.mine).toEqual(want.subarray((r * n) / 2, ((r + 1) * n) / 2));
      expect(got.gathered).toEqual(Uint16Array.from([...bf(0), ...bf(1)]));
      expect(got.cast).toEqual(results[1].gathered);
      expect(bf16BitsToF32(got.gathered).every(Number.isFinite)).toBe(true);
    }
  });
});
