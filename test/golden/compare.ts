// Element-wise comparison against a reference, with a readable report of the worst offenders.

import type { HostTensor } from "../../runtime/cpu/index.ts";

/** |actual - expected| <= atol + rtol * |expected|; NaN matches only NaN, infinities match exactly. */
export interface Tolerance {
  readonly rtol: number;
  readonly atol: number;
  /** Compare bit patterns (so -0 differs from +0); implies rtol = atol = 0. */
  readonly bits?: boolean;
}

/** The same bits. */
export const EXACT: Tolerance = { rtol: 0, atol: 0, bits: true };
/** The same values (-0 equals +0). */
export const SAME_VALUE: Tolerance = { rtol: 0, atol: 0 };

/** Bit-level equality for floats (so -0 vs +0 counts as a difference), NaN matching any NaN. */
function sameBits(a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  return Object.is(a, b);
}

/** Throws an Error listing the mismatches (index, got, want, allowed) when any element is off. */
export function expectClose(actual: HostTensor, expected: HostTensor, tol: Tolerance, what = "output"): void {
  if (actual.shape.join() !== expected.shape.join()) {
    throw new Error(`${what}: shape [${actual.shape.join(",")}] differs from torch's [${expected.shape.join(",")}]`);
  }
  const a = actual.data;
  const e = expected.data;
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < e.length; i++) {
    const x = a[i];
    const y = e[i];
    let ok: boolean;
    if (tol.bits) ok = sameBits(x, y);
    else if (Number.isNaN(y) || !Number.isFinite(y)) ok = sameBits(x, y);
    else ok = Math.abs(x - y) <= tol.atol + tol.rtol * Math.abs(y);
    if (!ok) {
      count++;
      if (bad.length < 6) bad.push(`  [${i}] got ${x}, torch ${y} (|diff| ${Math.abs(x - y)})`);
    }
  }
  if (count > 0) {
    const rule = tol.bits ? "bit-exact" : `|diff| <= ${tol.atol} + ${tol.rtol}*|torch|`;
    throw new Error(`${what}: ${count} of ${e.length} elements differ from torch (${rule}):\n${bad.join("\n")}`);
  }
}
