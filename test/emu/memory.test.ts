import { describe, expect, it } from "vitest";
import { GlobalMemory, PtxRuntimeError } from "../../runtime/ptx-emu/index.ts";
import { atomicsPtx, faultsPtx, loadStoreTypesPtx, outOfBoundsPtx, sharedExchangePtx } from "./kernels/memory.ts";
import { lineOf, runKernel } from "./ptx-text.ts";

describe("loads and stores", () => {
  it("extends, truncates, vectorises and reads parameters as PTX specifies", () => {
    const mem = new GlobalMemory();
    const src = new DataView(new ArrayBuffer(64));
    src.setUint8(1, 0xf0); // s8 -16, u8 240
    src.setUint16(2, 0x8001, true); // s16 -32767, u16 32769
    src.setInt32(4, -5, true);
    src.setUint32(8, 0x11111111, true);
    src.setUint32(12, 0x22222222, true);
    [1.5, -2, 3.25, 4].forEach((v, i) => {
      src.setFloat32(16 + 4 * i, v, true);
    });
    src.setBigUint64(32, 0x0123456789abcdefn, true);
    [40, 44, 48, 52, 56, 60].forEach((o, i) => {
      src.setUint32(o, 100 + i, true);
    });
    const psrc = mem.upload(new Uint8Array(src.buffer));
    const pout = mem.alloc(128);
    runKernel(loadStoreTypesPtx, "loadStoreTypes", { grid: 1, block: 1, params: [psrc, pout, 65535, -7, 2.5] }, mem);
    const out = new DataView(mem.read(pout, 128).buffer);
    const i32 = (o: number) => out.getInt32(o, true);
    const u32 = (o: number) => out.getUint32(o, true);
    expect([i32(0), u32(4), i32(8), u32(12), u32(16)]).toEqual([-16, 240, -32767, 32769, 32769]);
    expect([u32(24), u32(28)]).toEqual([0x22222222, 0x11111111]);
    expect([0, 1, 2, 3].map((k) => out.getFloat32(32 + 4 * k, true))).toEqual([4, 3.25, -2, 1.5]);
    expect(out.getBigUint64(48, true)).toBe(0x0123456789abcdefn);
    expect(out.getBigInt64(56, true)).toBe(-5n); // ld.global.s32 into a 64-bit register sign-extends
    expect([64, 68, 72, 76, 80, 84].map(u32)).toEqual([100, 101, 102, 103, 104, 105]);
    expect(out.getUint8(88)).toBe(0x01); // st.u8 of 0xffff8001 keeps the low byte
    expect([out.getUint16(90, true), out.getUint16(92, true), out.getUint16(94, true)]).toEqual([0x8001, 0x8001, 0x8001]);
    expect([u32(96), u32(100), u32(104), u32(108)]).toEqual([0x11111111, 0x11111111, 0x11111111, 0]); // stage is at shared offset 0
    expect([u32(112), i32(116)]).toEqual([65535, -7]);
    expect(out.getFloat64(120, true)).toBe(2.5);
  });

  it("shares memory between warps across bar.sync; dynamic shared memory follows the static part", () => {
    const mem = new GlobalMemory();
    const pout = mem.alloc(64 * 8);
    const { stats } = runKernel(
      sharedExchangePtx,
      "sharedExchange",
      { grid: 1, block: 64, dynamicSharedBytes: 256, params: [pout] },
      mem,
    );
    const out = mem.readU32(pout, 128);
    for (let t = 0; t < 64; t++) {
      expect(out[2 * t]).toBe((t ^ 33) * 10);
      expect(out[2 * t + 1]).toBe(16); // 12 static bytes, then the 16-byte aligned dynamic region
    }
    expect(stats.sharedBytesPerCta).toBe(16 + 256);
    expect(stats.bytes.sharedStore).toBe(64 * 8);
    expect(stats.bytes.sharedLoad).toBe(64 * 4);
    expect(stats.bytes.globalStore).toBe(64 * 8);
  });

  it("performs atomics on global and shared memory", () => {
    const mem = new GlobalMemory();
    const cells = mem.upload(new Int32Array([0, 0, -1, 1, 0, 0, 0, 0, 0, 0]));
    runKernel(atomicsPtx, "atomics", { grid: 1, block: 128, params: [cells] }, mem);
    const v = new DataView(mem.read(cells, 40).buffer);
    expect(v.getFloat32(0, true)).toBe((127 * 128) / 2);
    expect(v.getUint32(4, true)).toBe(128);
    expect(v.getInt32(8, true)).toBe(127);
    expect(v.getInt32(12, true)).toBe(-127);
    expect(v.getBigUint64(16, true)).toBe(BigInt((127 * 128) / 2));
    expect(v.getUint32(24, true)).toBe(127); // the last exchange, in thread order
    expect(v.getUint32(28, true)).toBe(1);
    expect(v.getUint32(32, true)).toBe(127);
    expect(v.getUint32(36, true)).toBe(256);
  });
});

describe("memory faults", () => {
  it("names kernel, PTX line, .loc source line, thread and block for an out-of-bounds load", () => {
    const mem = new GlobalMemory();
    const n = 101;
    const buf = mem.alloc(n * 4);
    const out = mem.alloc(128 * 4);
    let err: unknown;
    try {
      runKernel(outOfBoundsPtx, "outOfBounds", { grid: 2, block: [32, 2, 1], params: [buf, out] }, mem);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PtxRuntimeError);
    const e = err as PtxRuntimeError;
    expect(e.kernel).toBe("outOfBounds");
    expect(e.at?.line).toBe(lineOf(outOfBoundsPtx, "ld.global.f32"));
    expect(e.at?.source).toEqual({ file: "kernels/attention.ts", line: 42, column: 7 });
    // global index 101 = block 1, local thread 37 = (5, 1, 0)
    expect(e.thread).toEqual([5, 1, 0]);
    expect(e.block).toEqual([1, 0, 0]);
    expect(e.message).toContain("out-of-bounds global access: 4 bytes");
    expect(e.message).toContain("0 bytes past the end of allocation");
    expect(e.message).toContain("(kernels/attention.ts:42)");
    expect(e.message).toContain("ld.global.f32 %f1, [%rd4];");
  });

  it.each([
    [0, "misaligned global access: 4 bytes", "ld.global.u32 %r2"],
    [1, "misaligned global access: 16 bytes", "ld.global.v4.u32"],
    [2, "out-of-bounds shared access: 4 bytes at 0x20", "st.shared.u32 [small+32]"],
    [3, "out-of-bounds global access", "st.u32 [%rd2]"],
  ])("mode %i faults with '%s'", (mode, message, line) => {
    const mem = new GlobalMemory();
    const buf = mem.alloc(64);
    expect(() => runKernel(faultsPtx, "faults", { grid: 1, block: 1, params: [buf, mode] }, mem)).toThrow(message);
    try {
      runKernel(faultsPtx, "faults", { grid: 1, block: 1, params: [buf, mode] }, mem);
    } catch (e) {
      expect((e as PtxRuntimeError).at?.line).toBe(lineOf(faultsPtx, line));
    }
  });

  it("faults on memory that was freed, and checks host copies", () => {
    const mem = new GlobalMemory();
    const buf = mem.alloc(64);
    const out = mem.alloc(64);
    mem.free(buf);
    expect(() => runKernel(outOfBoundsPtx, "outOfBounds", { grid: 1, block: [16, 1, 1], params: [buf, out] }, mem)).toThrow(
      /allocation 0x[0-9a-f]+ of 64 bytes was freed/,
    );
    const live = mem.alloc(8);
    expect(() => mem.write(live, new Uint8Array(9))).toThrow(RangeError);
    expect(() => mem.read(live + 4, 8)).toThrow(/past the end/);
  });
});
