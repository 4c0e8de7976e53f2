// Conversions (bf16/f16/f32/int with every rounding modifier, packing with mov and cvt.bf16x2), comparisons
// (setp with every comparison, combine and p|q outputs), selection and predicated execution.

import { bf16Bits, bitsOf, decompose, f16Bits, f32, type Mode, roundExact } from "../float-oracle.ts";
import { opTableKernel } from "../op-table.ts";
import type { RefCase } from "./int-alu.ts";

const F = f32;
const s = (x: number) => x | 0;
const u = (x: number) => x >>> 0;

/** Float -> integer as PTX cvt defines it: round with the mode, saturate to the range, NaN -> 0. */
function toInt(x: number, mode: Mode, lo: number, hi: number): number {
  if (Number.isNaN(x)) return 0;
  let r: number;
  if (mode === "rz") r = Math.trunc(x);
  else if (mode === "rm") r = Math.floor(x);
  else if (mode === "rp") r = Math.ceil(x);
  else {
    const fl = Math.floor(x);
    const d = x - fl;
    r = d < 0.5 ? fl : d > 0.5 ? fl + 1 : fl % 2 === 0 ? fl : fl + 1;
  }
  return Math.min(hi, Math.max(lo, r));
}

/** Float -> integral float (cvt.rni.f32.f32 ...), keeping the sign of zero. */
function toIntegral(x: number, mode: Mode): number {
  if (!Number.isFinite(x)) return x;
  const r = toInt(x, mode, -Infinity, Infinity);
  return r === 0 ? x * 0 : r;
}

const intToF32 = (v: number, mode: Mode) => {
  if (v === 0) return 0;
  const [m, e] = decompose(v);
  return roundExact(m, e, mode);
};

const cmp = (op: string) => `setp.${op}.f32 %p1, %fa, %fb; selp.u32 {d}, 1, 0, %p1;`;
const nan2 = (a: number, b: number) => Number.isNaN(F(a)) || Number.isNaN(F(b));

export const CONVERT_CASES: RefCase[] = [
  { kind: "b32", ptx: "cvt.rn.bf16.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;", ref: (a) => bf16Bits(F(a), "rn") },
  { kind: "b32", ptx: "cvt.rz.bf16.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;", ref: (a) => bf16Bits(F(a), "rz") },
  {
    kind: "b32",
    ptx: "cvt.rn.relu.bf16.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;",
    ref: (a) => (Number.isNaN(F(a)) ? 0x7fff : F(a) <= 0 ? 0 : bf16Bits(F(a), "rn")), // -0 -> +0
  },
  {
    kind: "b32",
    ptx: "cvt.rn.bf16.f32 %h1, %fa; cvt.f32.bf16 %g1, %h1; mov.b32 {d}, %g1;",
    ref: (a) => (bf16Bits(F(a), "rn") << 16) >>> 0,
  },
  // cvt.rn.bf16x2.f32 d, a, b: a goes to the upper half, b to the lower.
  {
    kind: "b32",
    ptx: "cvt.rn.bf16x2.f32 {d}, %fa, %fb;",
    ref: (a, b) => ((bf16Bits(F(a), "rn") << 16) | bf16Bits(F(b), "rn")) >>> 0,
  },
  { kind: "b32", ptx: "cvt.rn.f16.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;", ref: (a) => f16Bits(F(a), "rn") },
  { kind: "b32", ptx: "cvt.rz.f16.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;", ref: (a) => f16Bits(F(a), "rz") },
  { kind: "b32", ptx: "cvt.rm.f16.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;", ref: (a) => f16Bits(F(a), "rm") },
  {
    kind: "b32",
    ptx: "cvt.rn.f16x2.f32 {d}, %fa, %fb;",
    ref: (a, b) => ((f16Bits(F(a), "rn") << 16) | f16Bits(F(b), "rn")) >>> 0,
  },
  {
    kind: "f32",
    ptx: "cvt.rn.f16.f32 %h1, %fa; cvt.f32.f16 {d}, %h1;",
    ref: (a) => {
      const h = f16Bits(F(a), "rn");
      const e = (h >>> 10) & 31;
      const m = h & 1023;
      const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? Number.NaN : Number.POSITIVE_INFINITY) : (1 + m / 1024) * 2 ** (e - 15);
      return bitsOf(h & 0x8000 ? -v : v);
    },
  },
  { kind: "b32", ptx: "cvt.rni.s32.f32 {d}, %fa;", ref: (a) => toInt(F(a), "rn", -(2 ** 31), 2 ** 31 - 1) },
  { kind: "b32", ptx: "cvt.rzi.s32.f32 {d}, %fa;", ref: (a) => toInt(F(a), "rz", -(2 ** 31), 2 ** 31 - 1) },
  { kind: "b32", ptx: "cvt.rmi.s32.f32 {d}, %fa;", ref: (a) => toInt(F(a), "rm", -(2 ** 31), 2 ** 31 - 1) },
  { kind: "b32", ptx: "cvt.rpi.s32.f32 {d}, %fa;", ref: (a) => toInt(F(a), "rp", -(2 ** 31), 2 ** 31 - 1) },
  { kind: "b32", ptx: "cvt.rzi.u32.f32 {d}, %fa;", ref: (a) => toInt(F(a), "rz", 0, 2 ** 32 - 1) },
  { kind: "b32", ptx: "cvt.rni.s16.f32 %h1, %fa; cvt.s32.s16 {d}, %h1;", ref: (a) => toInt(F(a), "rn", -32768, 32767) },
  { kind: "b32", ptx: "cvt.rni.u8.f32 %h1, %fa; cvt.u32.u16 {d}, %h1;", ref: (a) => toInt(F(a), "rn", 0, 255) },
  {
    kind: "b64",
    ptx: "cvt.rzi.s64.f32 {d}, %fa;",
    ref: (a) => {
      if (Number.isNaN(F(a))) return -(2n ** 63n); // NaN -> 0x8000000000000000 for 64-bit results (hardware)
      const r = toInt(F(a), "rz", -Infinity, Infinity);
      return r >= 2 ** 63 ? 2n ** 63n - 1n : r < -(2 ** 63) ? -(2n ** 63n) : BigInt(r);
    },
  },
  {
    kind: "b64",
    ptx: "cvt.rni.u64.f32 {d}, %fa;",
    ref: (a) => {
      if (Number.isNaN(F(a))) return -(2n ** 63n);
      const r = toInt(F(a), "rn", 0, Infinity);
      return r >= 2 ** 64 ? 2n ** 64n - 1n : BigInt(r);
    },
  },
  { kind: "b32", ptx: "cvt.rni.u32.f32 {d}, %fa;", ref: (a) => toInt(F(a), "rn", 0, 2 ** 32 - 1) },
  { kind: "f32", ptx: "cvt.rn.f32.s32 {d}, %ia;", ref: (a) => bitsOf(Math.fround(s(a))) },
  { kind: "f32", ptx: "cvt.rz.f32.s32 {d}, %ia;", ref: (a) => bitsOf(intToF32(s(a), "rz")) },
  { kind: "f32", ptx: "cvt.rm.f32.u32 {d}, %ia;", ref: (a) => bitsOf(intToF32(u(a), "rm")) },
  { kind: "f32", ptx: "cvt.rp.f32.u32 {d}, %ia;", ref: (a) => bitsOf(intToF32(u(a), "rp")) },
  {
    kind: "f32",
    ptx: "cvt.rn.f32.s64 {d}, %la;",
    ref: (a, b) => {
      const v = BigInt.asIntN(64, (BigInt(u(b)) << 32n) | BigInt(u(a)));
      return v === 0n ? 0 : bitsOf(roundExact(v, 0, "rn"));
    },
  },
  { kind: "f32", ptx: "cvt.rni.f32.f32 {d}, {a};", ref: (a) => bitsOf(toIntegral(F(a), "rn")) },
  { kind: "f32", ptx: "cvt.rzi.f32.f32 {d}, {a};", ref: (a) => bitsOf(toIntegral(F(a), "rz")) },
  { kind: "f32", ptx: "cvt.rmi.f32.f32 {d}, {a};", ref: (a) => bitsOf(toIntegral(F(a), "rm")) },
  { kind: "f32", ptx: "cvt.rpi.f32.f32 {d}, {a};", ref: (a) => bitsOf(toIntegral(F(a), "rp")) },
  { kind: "f32", ptx: "cvt.sat.f32.f32 {d}, {a};", ref: (a) => bitsOf(F(a) > 0 ? Math.min(F(a), 1) : 0) },
  { kind: "b32", ptx: "mov.b32 {%h1, %h2}, {a}; mov.b32 {d}, {%h2, %h1};", ref: (a) => ((a >>> 16) | (a << 16)) >>> 0 },
  { kind: "b32", ptx: "mov.b32 {%h1, _}, {a}; cvt.u32.u16 {d}, %h1;", ref: (a) => a & 0xffff },
  { kind: "b32", ptx: "mov.b64 %x1, {{a}, {b}}; mov.b64 {_, {d}}, %x1;", ref: (_a, b) => b },
  // setp: ordered comparisons are false on NaN, unordered (..u) ones true.
  ...(["eq", "ne", "lt", "le", "gt", "ge"] as const).map((op) => ({
    kind: "b32" as const,
    ptx: cmp(op),
    ref: (a: number, b: number) => {
      if (nan2(a, b)) return 0;
      const x = F(a);
      const y = F(b);
      return +(op === "eq"
        ? x === y
        : op === "ne"
          ? x !== y
          : op === "lt"
            ? x < y
            : op === "le"
              ? x <= y
              : op === "gt"
                ? x > y
                : x >= y);
    },
  })),
  ...(["equ", "neu", "ltu", "leu", "gtu", "geu"] as const).map((op) => ({
    kind: "b32" as const,
    ptx: cmp(op),
    ref: (a: number, b: number) => {
      if (nan2(a, b)) return 1;
      const x = F(a);
      const y = F(b);
      return +(op === "equ"
        ? x === y
        : op === "neu"
          ? x !== y
          : op === "ltu"
            ? x < y
            : op === "leu"
              ? x <= y
              : op === "gtu"
                ? x > y
                : x >= y);
    },
  })),
  { kind: "b32", ptx: cmp("num"), ref: (a, b) => +!nan2(a, b) },
  { kind: "b32", ptx: cmp("nan"), ref: (a, b) => +nan2(a, b) },
  { kind: "b32", ptx: "setp.lt.s32 %p1, {a}, {b}; selp.u32 {d}, 1, 0, %p1;", ref: (a, b) => +(s(a) < s(b)) },
  { kind: "b32", ptx: "setp.lo.u32 %p1, {a}, {b}; selp.u32 {d}, 1, 0, %p1;", ref: (a, b) => +(u(a) < u(b)) },
  { kind: "b32", ptx: "setp.ls.u32 %p1, {a}, {b}; selp.u32 {d}, 1, 0, %p1;", ref: (a, b) => +(u(a) <= u(b)) },
  { kind: "b32", ptx: "setp.hs.u32 %p1, {a}, 100; selp.u32 {d}, 1, 0, %p1;", ref: (a) => +(u(a) >= 100) },
  { kind: "b32", ptx: "setp.ne.b32 %p1, {a}, {b}; selp.u32 {d}, 1, 0, %p1;", ref: (a, b) => +(a !== b) },
  // combine with a second predicate, possibly negated, and the complement output q
  {
    kind: "b32",
    ptx: "setp.gt.s32 %p2, {c}, 10; setp.lt.and.s32 %p1, {a}, {b}, %p2; selp.u32 {d}, 1, 0, %p1;",
    ref: (a, b, c) => +(s(a) < s(b) && s(c) > 10),
  },
  {
    kind: "b32",
    ptx: "setp.gt.s32 %p2, {c}, 10; setp.lt.or.s32 %p1, {a}, {b}, !%p2; selp.u32 {d}, 1, 0, %p1;",
    ref: (a, b, c) => +(s(a) < s(b) || !(s(c) > 10)),
  },
  {
    kind: "b32",
    ptx: "setp.gt.s32 %p2, {c}, 10; setp.lt.xor.s32 %p1|%p3, {a}, {b}, %p2; selp.u32 %t1, 1, 0, %p1; selp.u32 %t2, 2, 0, %p3; or.b32 {d}, %t1, %t2;",
    ref: (a, b, c) => {
      const t = s(a) < s(b);
      const cv = s(c) > 10;
      return +(t !== cv) | (+(!t !== cv) << 1);
    },
  },
  {
    kind: "b32",
    ptx: "setp.ltu.f32 %p1|%p2, %fa, %fb; selp.u32 %t1, 1, 0, %p1; selp.u32 %t2, 2, 0, %p2; or.b32 {d}, %t1, %t2;",
    ref: (a, b) => {
      const t = nan2(a, b) || F(a) < F(b);
      return +t | (+!t << 1);
    },
  },
  {
    kind: "b32",
    ptx: "setp.lt.s32 %p1, {a}, {b}; setp.gt.s32 %p2, {c}, 10; and.pred %p3, %p1, %p2; or.pred %p1, %p1, %p2; xor.pred %p2, %p3, %p1; not.pred %p2, %p2; selp.u32 {d}, 1, 0, %p2;",
    ref: (a, b, c) => {
      const p1 = s(a) < s(b);
      const p2 = s(c) > 10;
      return +!((p1 && p2) !== (p1 || p2));
    },
  },
  // predicated execution: @%p / @!%p
  {
    kind: "b32",
    ptx: "mov.u32 {d}, 5; setp.lt.s32 %p1, {a}, {b}; @%p1 mov.u32 {d}, 7; @!%p1 add.u32 {d}, {d}, 100;",
    ref: (a, b) => (s(a) < s(b) ? 7 : 105),
  },
  { kind: "b32", ptx: "setp.eq.s32 %p1, {a}, 0; selp.b32 {d}, {b}, {c}, %p1;", ref: (a, b, c) => (a === 0 ? b : c) },
  {
    kind: "f32",
    ptx: "setp.gtu.f32 %p1, {a}, {b}; selp.f32 {d}, {a}, {b}, %p1;",
    ref: (a, b) => (nan2(a, b) || F(a) > F(b) ? a : b),
  },
];

const rowsF: [number, number, number][] = [
  [1.0, 2.0, 3],
  [1 + 2 ** -8, 1 + 3 * 2 ** -8, 11], // bf16 ties: to even (down), to even (up)
  [1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 12],
  [Number.NaN, 1, 20],
  [1, Number.NaN, 0],
  [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5],
  [-0, 0, 0],
  [3.4028234663852886e38, -3.4028234663852886e38, 100],
  [1e-40, -1e-40, 2],
  [2.5, 3.5, -4],
  [-2.5, -0.5, 50],
  [0.49999997, -1.5, 1],
  [65520, 65519.99, 3], // f16 overflow boundary
  [6.0e-8, 1e-5, 30],
  [2147483648, -2147483904, 7],
  [-1e20, 4294967296, 9],
  [300.5, -129.5, 11],
  [-0.75, 0.75, 10],
  [123456.78, 1.17549435e-38, 42],
  [16777217, -16777219, 1],
];
const intRows: [number, number, number][] = [
  [16777217, -16777217, 3],
  [2147483647, -2147483648, 0],
  [33554435, 0xfffffff1, 1],
];
export const CONVERT_ROWS: [number, number, number][] = [
  ...rowsF.map(([a, b, c]) => [bitsOf(a), bitsOf(b), c] as [number, number, number]),
  ...intRows,
];

export const convertComparePtx = opTableKernel("convertCompare", CONVERT_CASES);
