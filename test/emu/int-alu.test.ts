import { describe, expect, it } from "vitest";
import { INT_CASES, INT_ROWS, intAluPtx } from "./kernels/int-alu.ts";
import { runOpTable } from "./op-table.ts";

function expected(kind: string, r: number | bigint): bigint {
  return kind === "b64" ? BigInt.asUintN(64, BigInt(r)) : BigInt((Number(r) | 0) >>> 0);
}

describe("integer and bit instructions", () => {
  const results = runOpTable(intAluPtx, "intAlu", INT_ROWS, INT_CASES.length);
  INT_CASES.forEach((c, j) => {
    it(c.ptx, () => {
      const bad: string[] = [];
      INT_ROWS.forEach(([a, b, cc], i) => {
        const want = expected(c.kind, c.ref(a, b, cc));
        const got = results[i]![j]!;
        if (want !== got)
          bad.push(`a=${a >>> 0} b=${b >>> 0} c=${cc >>> 0}: got 0x${got.toString(16)}, want 0x${want.toString(16)}`);
      });
      expect(bad).toEqual([]);
    });
  });
});
