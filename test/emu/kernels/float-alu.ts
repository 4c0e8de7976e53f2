// f32/f64 arithmetic and special functions, with references from the exact rounding oracle.

import { addRef, bitsOf, decompose, f32, fmaRef, type Mode, mulRef, roundExact } from "../float-oracle.ts";
import { opTableKernel } from "../op-table.ts";
import type { RefCase } from "./int-alu.ts";

const F = f32;
const fr = Math.fround;
const MIN_NORMAL = 2 ** -126;
const ftz = (x: number) => (Math.abs(x) < MIN_NORMAL ? x * 0 : x);
const sat = (x: number) => (x > 0 ? Math.min(x, 1) : 0);
const nanAware = (pick: (x: number, y: number) => number) => (x: number, y: number) =>
  Number.isNaN(x) ? y : Number.isNaN(y) ? x : pick(x, y);
/** Case result as f32 value; the test compares bits (NaN: any NaN). */
const f = (ref: (a: number, b: number, c: number) => number) => (a: number, b: number, c: number) =>
  bitsOf(fr(ref(F(a), F(b), F(c))));

const directed = (op: "add" | "sub" | "mul", mode: Mode) =>
  f((a, b) => (op === "mul" ? mulRef(a, b, mode) : addRef(a, op === "sub" ? -b : b, mode)));

function f64Bits(x: number): bigint {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  return dv.getBigUint64(0);
}

export const FLOAT_CASES: RefCase[] = [
  { kind: "f32", ptx: "add.f32 {d}, {a}, {b};", ref: f((a, b) => a + b) },
  { kind: "f32", ptx: "sub.rn.f32 {d}, {a}, {b};", ref: f((a, b) => a - b) },
  { kind: "f32", ptx: "mul.f32 {d}, {a}, {b};", ref: f((a, b) => a * b) },
  { kind: "f32", ptx: "add.rz.f32 {d}, {a}, {b};", ref: directed("add", "rz") },
  { kind: "f32", ptx: "add.rm.f32 {d}, {a}, {b};", ref: directed("add", "rm") },
  { kind: "f32", ptx: "add.rp.f32 {d}, {a}, {b};", ref: directed("add", "rp") },
  { kind: "f32", ptx: "sub.rz.f32 {d}, {a}, {b};", ref: directed("sub", "rz") },
  { kind: "f32", ptx: "mul.rz.f32 {d}, {a}, {b};", ref: directed("mul", "rz") },
  { kind: "f32", ptx: "mul.rm.f32 {d}, {a}, {b};", ref: directed("mul", "rm") },
  { kind: "f32", ptx: "mul.rp.f32 {d}, {a}, {b};", ref: directed("mul", "rp") },
  { kind: "f32", ptx: "fma.rn.f32 {d}, {a}, {b}, {c};", ref: f((a, b, c) => fmaRef(a, b, c, "rn")) },
  { kind: "f32", ptx: "fma.rz.f32 {d}, {a}, {b}, {c};", ref: f((a, b, c) => fmaRef(a, b, c, "rz")) },
  { kind: "f32", ptx: "fma.rp.f32 {d}, {a}, {b}, {c};", ref: f((a, b, c) => fmaRef(a, b, c, "rp")) },
  { kind: "f32", ptx: "mad.rn.f32 {d}, {a}, {b}, {c};", ref: f((a, b, c) => fmaRef(a, b, c, "rn")) },
  { kind: "f32", ptx: "fma.rn.sat.f32 {d}, {a}, {b}, {c};", ref: f((a, b, c) => sat(fmaRef(a, b, c, "rn"))) },
  { kind: "f32", ptx: "fma.rn.ftz.f32 {d}, {a}, {b}, {c};", ref: f((a, b, c) => ftz(fmaRef(ftz(a), ftz(b), ftz(c), "rn"))) },
  { kind: "f32", ptx: "add.sat.f32 {d}, {a}, {b};", ref: f((a, b) => sat(fr(a + b))) },
  { kind: "f32", ptx: "add.ftz.f32 {d}, {a}, {b};", ref: f((a, b) => ftz(fr(ftz(a) + ftz(b)))) },
  { kind: "f32", ptx: "mul.ftz.f32 {d}, {a}, {b};", ref: f((a, b) => ftz(fr(ftz(a) * ftz(b)))) },
  { kind: "f32", ptx: "div.rn.f32 {d}, {a}, {b};", ref: f((a, b) => a / b) },
  { kind: "f32", ptx: "div.approx.f32 {d}, {a}, {b};", ref: f((a, b) => a / b) },
  { kind: "f32", ptx: "div.full.f32 {d}, {a}, {b};", ref: f((a, b) => a / b) },
  { kind: "f32", ptx: "min.f32 {d}, {a}, {b};", ref: f(nanAware(Math.min)) },
  { kind: "f32", ptx: "max.f32 {d}, {a}, {b};", ref: f(nanAware(Math.max)) },
  { kind: "f32", ptx: "min.NaN.f32 {d}, {a}, {b};", ref: f((a, b) => Math.min(a, b)) },
  { kind: "f32", ptx: "max.NaN.f32 {d}, {a}, {b};", ref: f((a, b) => Math.max(a, b)) },
  // abs/neg act on the sign bit only, but give the canonical NaN 0x7fffffff for a NaN (as the hardware does).
  { kind: "b32", ptx: "abs.f32 {d}, {a};", ref: (a) => (Number.isNaN(F(a)) ? 0x7fffffff : a & 0x7fffffff) },
  { kind: "b32", ptx: "neg.f32 {d}, {a};", ref: (a) => (Number.isNaN(F(a)) ? 0x7fffffff : a ^ 0x80000000) },
  { kind: "b32", ptx: "copysign.f32 {d}, {a}, {b};", ref: (a, b) => (b & 0x7fffffff) | (a & 0x80000000) },
  { kind: "f32", ptx: "abs.ftz.f32 {d}, {a};", ref: f((a) => Math.abs(ftz(a))) },
  { kind: "f32", ptx: "sqrt.rn.f32 {d}, {a};", ref: f(Math.sqrt) },
  { kind: "f32", ptx: "sqrt.approx.f32 {d}, {a};", ref: f(Math.sqrt) },
  { kind: "f32", ptx: "rcp.rn.f32 {d}, {a};", ref: f((a) => 1 / a) },
  { kind: "f32", ptx: "rcp.approx.ftz.f32 {d}, {a};", ref: f((a) => ftz(fr(1 / ftz(a)))) },
  { kind: "f32", ptx: "rsqrt.approx.f32 {d}, {a};", ref: f((a) => 1 / Math.sqrt(a)) },
  { kind: "f32", ptx: "ex2.approx.f32 {d}, {a};", ref: f((a) => 2 ** a) },
  { kind: "f32", ptx: "ex2.approx.ftz.f32 {d}, {a};", ref: f((a) => ftz(fr(2 ** ftz(a)))) },
  { kind: "f32", ptx: "lg2.approx.f32 {d}, {a};", ref: f(Math.log2) },
  { kind: "f32", ptx: "tanh.approx.f32 {d}, {a};", ref: f(Math.tanh) },
  { kind: "f32", ptx: "sin.approx.f32 {d}, {a};", ref: f(Math.sin) },
  { kind: "f32", ptx: "cos.approx.f32 {d}, {a};", ref: f(Math.cos) },
  { kind: "b32", ptx: "testp.notanumber.f32 %p1, %fa; selp.u32 {d}, 1, 0, %p1;", ref: (a) => +Number.isNaN(F(a)) },
  { kind: "b32", ptx: "testp.finite.f32 %p1, %fa; selp.u32 {d}, 1, 0, %p1;", ref: (a) => +Number.isFinite(F(a)) },
  {
    kind: "b32",
    ptx: "testp.subnormal.f32 %p1, %fa; selp.u32 {d}, 1, 0, %p1;",
    ref: (a) => +(F(a) !== 0 && Math.abs(F(a)) < MIN_NORMAL),
  },
  // f64 through f32 inputs
  { kind: "b64", ptx: "cvt.f64.f32 %x1, %fa; cvt.f64.f32 %x2, %fb; add.f64 {d}, %x1, %x2;", ref: (a, b) => f64Bits(F(a) + F(b)) },
  {
    kind: "b64",
    ptx: "cvt.f64.f32 %x1, %fa; cvt.f64.f32 %x2, %fb; div.rn.f64 {d}, %x1, %x2;",
    ref: (a, b) => f64Bits(F(a) / F(b)),
  },
  { kind: "b64", ptx: "cvt.f64.f32 %x1, %fa; sqrt.rn.f64 {d}, %x1;", ref: (a) => f64Bits(Math.sqrt(F(a))) },
  {
    kind: "b64",
    ptx: "cvt.f64.f32 %x1, %fa; neg.f64 {d}, %x1;",
    ref: (a) => (Number.isNaN(F(a)) ? 0x7ff8000000000000n : f64Bits(-F(a))),
  },
  {
    kind: "b64",
    ptx: "cvt.f64.f32 %x1, %fa; abs.f64 {d}, %x1;",
    ref: (a) => (Number.isNaN(F(a)) ? 0x7ff8000000000000n : f64Bits(Math.abs(F(a)))),
  },
  {
    kind: "f32",
    ptx: "cvt.f64.f32 %x1, %fa; cvt.f64.f32 %x2, %fb; div.rn.f64 %x3, %x1, %x2; cvt.rn.f32.f64 {d}, %x3;",
    ref: f((a, b) => a / b),
  },
  {
    kind: "f32",
    ptx: "cvt.f64.f32 %x1, %fa; cvt.f64.f32 %x2, %fb; div.rn.f64 %x3, %x1, %x2; cvt.rz.f32.f64 {d}, %x3;",
    ref: f((a, b) => {
      const q = a / b;
      if (!Number.isFinite(q) || q === 0) return q;
      const [m, e] = decompose(q);
      return roundExact(m, e, "rz");
    }),
  },
];

/** f32 inputs [a, b, c]; the last rows are built so that fma differs from a rounded multiply then add. */
const rowsF32: [number, number, number][] = [
  [1.5, -2.25, 3],
  [0.1, 0.2, 0.3],
  [-0, 0, 1],
  [Number.NaN, 1, 2],
  [1, Number.NaN, -3],
  [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0.5],
  [1e-40, 2, 1e-39],
  [3.4e38, 2, -1],
  [1, 2 ** -24, 2 ** -48],
  [-7.75, 0.3333333, 100],
  [2.5, -0.5, -2.5],
  [16777216, 1, 3],
  [-1e-45, 1e30, -1e-30],
  [0.75, 4, 1e10],
  [-3.5, 2, 0.49999997],
  [4, -1.0000001, 0.25],
  [(1 + 2 ** -12) * 2 ** -24, 1 - 2 ** -12 + 2 ** -24, 1],
  [-(1 + 2 ** -12) * 2 ** -24, 1 - 2 ** -12 + 2 ** -24, -1],
  [1.1754942e-38, 0.5, -1.1754942e-38],
  [-2, 0, -0],
];
export const FLOAT_ROWS: [number, number, number][] = rowsF32.map((r) => r.map((x) => bitsOf(x)) as [number, number, number]);

export const floatAluPtx = opTableKernel("floatAlu", FLOAT_CASES);
