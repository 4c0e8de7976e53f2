import { describe, expect, it } from "vitest";
import { f32 } from "./float-oracle.ts";
import { CONVERT_CASES, CONVERT_ROWS, convertComparePtx } from "./kernels/convert-compare.ts";
import { runOpTable } from "./op-table.ts";

describe("conversions, comparisons and predication", () => {
  const results = runOpTable(convertComparePtx, "convertCompare", CONVERT_ROWS, CONVERT_CASES.length);
  CONVERT_CASES.forEach((c, j) => {
    it(c.ptx, () => {
      const bad: string[] = [];
      CONVERT_ROWS.forEach(([a, b, cc], i) => {
        const r = c.ref(a, b, cc);
        const want = c.kind === "b64" ? BigInt.asUintN(64, BigInt(r)) : BigInt(Number(r) >>> 0);
        const got = results[i]![j]!;
        const bothNaN = c.kind === "f32" && Number.isNaN(f32(Number(want))) && Number.isNaN(f32(Number(got)));
        if (want !== got && !bothNaN)
          bad.push(`row ${i} (${f32(a)}, ${f32(b)}, ${cc}): got 0x${got.toString(16)}, want 0x${want.toString(16)}`);
      });
      expect(bad).toEqual([]);
    });
  });

  it("rounds f32 to bf16 to nearest even, and NaN to the canonical NaN", () => {
    const j = CONVERT_CASES.findIndex((c) => c.ptx.startsWith("cvt.rn.bf16.f32"));
    const k = CONVERT_CASES.findIndex((c) => c.ptx.startsWith("cvt.rn.bf16x2.f32"));
    expect(results[0]![j]).toBe(0x3f80n); // 1.0
    expect(results[1]![j]).toBe(0x3f80n); // 1 + 2^-8 is a tie: down to the even 1.0
    expect(results[2]![j]).toBe(0x3f81n); // just above the tie: up
    expect(results[3]![j]).toBe(0x7fffn); // NaN
    expect(results[5]![j]).toBe(0x7f80n); // +inf
    expect(results[6]![j]).toBe(0x8000n); // -0
    expect(results[7]![j]).toBe(0x7f80n); // FLT_MAX rounds up to +inf
    // a = 1 + 2^-8 (a tie, down to 1.0 = 0x3f80) lands in the upper half; b = 1 + 3*2^-8 (a tie, up to the
    // even 1 + 2^-6 = 0x3f82) in the lower half
    expect(results[1]![k]).toBe(0x3f803f82n);
  });
});
