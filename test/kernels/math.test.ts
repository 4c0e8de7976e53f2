// The expression language's transcendentals (compiler/codegen/render-math.ts), run in the PTX
// emulator over a sweep that includes the tails and special values, against f64 references.
// Bounds are relative (plus a tiny absolute floor where the reference is 0): the expansions'
// own error; on a GPU, ex2.approx and rsqrt.approx add at most 2^-22 relative per use.

import { describe, expect, it } from "vitest";
import {
  defineKernel,
  type Expr,
  erf,
  exp,
  exp2,
  gelu,
  geluTanh,
  log,
  ptr,
  rcp,
  roundBf16,
  rsqrt,
  scalar,
  sigmoid,
  sqrt,
  tanh,
} from "../../compiler/tile/index.ts";
import { hostTensor, toBf16 } from "../../runtime/cpu/index.ts";
import { erf as erfRef, gelu as geluRef, sigmoid as sigmoidRef } from "../../runtime/cpu/math.ts";
import { runInEmulator, zeros } from "./harness.ts";

interface MathCase {
  name: string;
  fn: (x: Expr<"f32">) => Expr<"f32">;
  ref: (x: number) => number;
  rel: number;
  abs?: number;
  /** Inputs outside the function's domain are skipped. */
  domain?: (x: number) => boolean;
}

const CASES: MathCase[] = [
  { name: "exp", fn: exp, ref: Math.exp, rel: 4e-7, domain: (x) => Math.abs(x) < 87 },
  { name: "exp2", fn: exp2, ref: (x) => 2 ** x, rel: 2.5e-7, domain: (x) => Math.abs(x) < 126 },
  { name: "log", fn: log, ref: Math.log, rel: 3e-7, abs: 1e-37, domain: (x) => x > 0 },
  { name: "tanh", fn: tanh, ref: Math.tanh, rel: 5e-7 },
  { name: "erf", fn: erf, ref: erfRef, rel: 4e-7 },
  { name: "sigmoid", fn: sigmoid, ref: sigmoidRef, rel: 1e-6, abs: 1e-37 },
  { name: "gelu", fn: gelu, ref: (x) => geluRef(x, "none"), rel: 1e-6, abs: 1e-12 },
  // The f64 references of both GELUs cancel to 0 in the far negative tail (1 + erf, 1 + tanh); the
  // kernels compute x/2 erfc and x sigmoid there instead, hence the small absolute floor.
  // geluTanh = x sigmoid(2u): u = sqrt(2/pi) x (1 + 0.044715 x^2) takes ~4 f32 roundings and the
  // result's relative sensitivity to u is 2|u| in the negative tail (|u| <= ~10 where it matters).
  { name: "geluTanh", fn: geluTanh, ref: (x) => geluRef(x, "tanh"), rel: 4e-6, abs: 1e-12 },
  { name: "rsqrt", fn: rsqrt, ref: (x) => 1 / Math.sqrt(x), rel: 2 ** -22, domain: (x) => x > 0 },
  { name: "sqrt", fn: sqrt, ref: Math.sqrt, rel: 2 ** -24, domain: (x) => x >= 0 },
  { name: "rcp", fn: rcp, ref: (x) => 1 / x, rel: 2 ** -24, domain: (x) => x !== 0 },
  { name: "roundBf16", fn: roundBf16, ref: toBf16, rel: 0 },
];

function sweep(): Float32Array {
  const xs: number[] = [0, -0, 1, -1, 0.5, 2 ** -20, -(2 ** -20), 1e-30, 3e-39, 100, -100, 1e30];
  for (let i = -4000; i <= 4000; i++) xs.push(i / 100); // [-40, 40] in 0.01 steps: all branch switches
  for (let i = -60; i <= 60; i++) xs.push(1.37 ** i); // magnitudes from 6e-9 to 2e8
  return Float32Array.from(xs);
}

describe("transcendentals in the emulator vs f64", () => {
  const xs = sweep();
  const n = xs.length;
  const kernel = defineKernel(
    { name: "math_sweep", params: { x: ptr("f32"), y: ptr("f32"), n: scalar("i32") }, warps: 4, grid: (p) => [p.n.ceilDiv(128)] },
    (k, p) => {
      const i = k.let(k.blockIdx.x.mul(128).add(k.tid), "i");
      const ok = i.lt(p.n);
      const [x] = k.loadGlobal(p.x, i, { pred: ok }) as Expr<"f32">[];
      CASES.forEach((c, j) => {
        k.storeGlobal(p.y, i.add(p.n.mul(j)), [c.fn(x)], { pred: ok });
      });
    },
  );
  const run = runInEmulator(kernel, { x: hostTensor([n], "f32", xs), y: zeros([CASES.length * n]), n });
  const y = run.tensors.get("y")!.data;

  CASES.forEach((c, j) => {
    it(`${c.name}: relative error <= ${c.rel.toExponential(1)}`, () => {
      let worst = 0;
      let at = 0;
      for (let i = 0; i < n; i++) {
        const x = xs[i];
        if (c.domain && !c.domain(x)) continue;
        const want = c.ref(x);
        const got = y[j * n + i];
        if (Number.isNaN(want)) {
          expect(got, `${c.name}(${x})`).toBeNaN();
          continue;
        }
        if (!Number.isFinite(want)) {
          expect(got, `${c.name}(${x})`).toBe(want);
          continue;
        }
        const r = Math.abs(got - want) / (c.rel * Math.abs(want) + (c.abs ?? 0) + Number.MIN_VALUE);
        if (r > worst) {
          worst = r;
          at = x;
        }
      }
      expect(worst, `${c.name} worst at x = ${at}: got ${y[j * n + xs.indexOf(at)]}, want ${c.ref(at)}`).toBeLessThanOrEqual(1);
    });
  });

  it("log of 0, negatives, inf and NaN follow IEEE", () => {
    const j = CASES.findIndex((c) => c.name === "log");
    const at = (v: number) => y[j * n + xs.indexOf(v)];
    expect(at(0)).toBe(Number.NEGATIVE_INFINITY);
    expect(at(-1)).toBeNaN();
  });
});
