import { describe, expect, it } from "vitest";
import { f32 } from "./float-oracle.ts";
import { FLOAT_CASES, FLOAT_ROWS, floatAluPtx } from "./kernels/float-alu.ts";
import { runOpTable } from "./op-table.ts";

function isNaNBits(kind: string, v: bigint): boolean {
  if (kind === "f32") return Number.isNaN(f32(Number(v & 0xffffffffn)));
  return kind === "b64" && (v & 0x7ff0000000000000n) === 0x7ff0000000000000n && (v & 0xfffffffffffffn) !== 0n;
}

describe("floating point instructions", () => {
  const results = runOpTable(floatAluPtx, "floatAlu", FLOAT_ROWS, FLOAT_CASES.length);
  FLOAT_CASES.forEach((c, j) => {
    it(c.ptx, () => {
      const bad: string[] = [];
      FLOAT_ROWS.forEach(([a, b, cc], i) => {
        const r = c.ref(a, b, cc);
        const want = c.kind === "b64" ? BigInt.asUintN(64, BigInt(r)) : BigInt(Number(r) >>> 0);
        const got = results[i]![j]!;
        const ok = want === got || (c.kind !== "b32" && isNaNBits(c.kind, want) && isNaNBits(c.kind, got));
        if (!ok)
          bad.push(
            `row ${i} (${[a, b, cc].map((x) => f32(x)).join(", ")}): got 0x${got.toString(16)}, want 0x${want.toString(16)}`,
          );
      });
      expect(bad).toEqual([]);
    });
  });

  it("fma is fused: the crafted rows round differently from mul then add", () => {
    const i = FLOAT_ROWS.length - 4;
    const [a, b, c] = FLOAT_ROWS[i]!.map(f32) as [number, number, number];
    const fused = f32(Number(results[i]![FLOAT_CASES.findIndex((x) => x.ptx.startsWith("fma.rn.f32"))]!));
    expect(fused).toBe(1 + 2 ** -23);
    expect(Math.fround(Math.fround(a * b) + c)).toBe(1);
  });
});
