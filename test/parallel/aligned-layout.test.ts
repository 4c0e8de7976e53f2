// FlatLayout with an alignment (the device engine's layout): every parameter, unit shard and decay
// run starts at a multiple of `align` elements, the gaps are zeros, and nothing changes without it.
import { describe, expect, it } from "vitest";
import { blockUnitOf, FlatLayout } from "../../runtime/parallel/index.ts";

const params = [
  { name: "blocks.0.a.weight", shape: [5, 7] }, // 35
  { name: "blocks.0.a.bias", shape: [7] }, // 7
  { name: "blocks.1.b.weight", shape: [100] },
  { name: "head.weight", shape: [3, 3] },
];

describe("FlatLayout with align", () => {
  it("aligns parameters, pads units to shards x align, and keeps every run aligned", () => {
    const L = new FlatLayout(params, 3, blockUnitOf, 16);
    expect(L.units.map((u) => [u.name, u.params.map((p) => [p.offset, p.extent]), u.numel, u.padded, u.shardNumel])).toEqual([
      [
        "blocks.0",
        [
          [0, 48],
          [48, 16],
        ],
        64,
        96,
        32,
      ],
      ["blocks.1", [[0, 112]], 112, 144, 48],
      ["", [[0, 16]], 16, 48, 16],
    ]);
    const decay = (name: string) => !name.endsWith("bias");
    for (let r = 0; r < 3; r++) {
      const runs = L.shardRuns(r, decay);
      // Contiguous, covering the local shard, each starting on a multiple of 16.
      let at = 0;
      for (const run of runs) {
        expect(run.start).toBe(at);
        expect(run.start % 16).toBe(0);
        at += run.length;
      }
      expect(at).toBe(L.shardNumel);
    }
    // Rank 1's shard of blocks.0 is elements [32, 64): the weight's tail [32, 48) (decay), the bias [48, 64) (none).
    expect(L.shardRuns(1, decay).slice(0, 2)).toEqual([
      { start: 0, length: 16, decay: true },
      { start: 16, length: 16, decay: false },
    ]);
    const value = (name: string) => Float32Array.from({ length: L.param(name).numel }, (_, i) => i + 1);
    const u0 = L.units[0];
    const flat = L.flatten(u0, value, new Float32Array(u0.padded).fill(9));
    expect([...flat.subarray(35, 48)].every((v) => v === 0)).toBe(true); // the weight's gap
    expect([...flat.subarray(55, 96)].every((v) => v === 0)).toBe(true); // the bias's gap and the padding
    expect(L.views(u0, flat).get("blocks.0.a.bias")).toEqual(value("blocks.0.a.bias"));
  });

  it("align 1 is the unaligned layout", () => {
    const a = new FlatLayout(params, 3, blockUnitOf);
    const b = new FlatLayout(params, 3, blockUnitOf, 1);
    expect(b.units).toEqual(a.units);
    expect(a.units[0].params.map((p) => p.extent)).toEqual([35, 7]);
    expect(a.units[0].padded).toBe(42);
  });
});
