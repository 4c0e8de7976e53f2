import { describe, expect, it } from "vitest";
import { packKernelArgs } from "../../runtime/cuda/kernel-args.ts";

describe("packKernelArgs", () => {
  it("places each argument at its natural alignment, little-endian", () => {
    const { params, offsets } = packKernelArgs([0x1122334455667788n, { u32: 7 }, { f32: 1.5 }, { u64: 9n }, { i32: -2 }]);
    expect([...offsets]).toEqual([0, 8, 12, 16, 24]);
    const v = new DataView(params.buffer);
    expect(v.getBigUint64(0, true)).toBe(0x1122334455667788n);
    expect(v.getUint32(8, true)).toBe(7);
    expect(v.getFloat32(12, true)).toBe(1.5);
    expect(v.getBigUint64(16, true)).toBe(9n);
    expect(v.getInt32(24, true)).toBe(-2);
    expect(params.byteLength).toBe(32);
  });

  it("pads a 4-byte value before an 8-byte one", () => {
    const { offsets } = packKernelArgs([{ u32: 1 }, 5n, { f64: 2.5 }, { i64: -1n }]);
    expect([...offsets]).toEqual([0, 8, 16, 24]);
  });

  it("gives an empty argument list a valid buffer", () => {
    const { params, offsets } = packKernelArgs([]);
    expect(offsets.length).toBe(0);
    expect(params.byteLength).toBe(8);
  });
});
