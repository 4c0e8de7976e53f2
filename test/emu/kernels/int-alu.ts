// Integer and bit instructions, each with a TypeScript reference of its PTX ISA semantics.
// Inputs a, b, c are u32 bit patterns; `s` and `u` give their signed and unsigned values.

import { type OpCase, opTableKernel } from "../op-table.ts";

export interface RefCase extends OpCase {
  ref: (a: number, b: number, c: number) => number | bigint;
}

const s = (x: number) => x | 0;
const u = (x: number) => x >>> 0;
const big = (x: number) => BigInt(s(x));
const ubig = (x: number) => BigInt(u(x));
/** The 64-bit inputs of "b64" cases (see op-table.ts). */
const A64 = (a: number, b: number) => (ubig(b) << 32n) | ubig(a);
const B64 = (a: number, _b: number, c: number) => (ubig(a) << 32n) | ubig(c);
const C64 = (_a: number, b: number, c: number) => (ubig(c) << 32n) | ubig(b);
const s64 = (x: bigint) => BigInt.asIntN(64, x);

function bfe(x: number, pos: number, len: number, signed: boolean): number {
  pos &= 0xff;
  len &= 0xff;
  const top = Math.min(pos + len - 1, 31);
  const sbit = signed && top >= 0 ? (x >>> top) & 1 : 0;
  let r = 0;
  for (let i = 0; i < 32; i++) r |= (i < len && pos + i <= 31 ? (x >>> (pos + i)) & 1 : sbit) << i;
  return r;
}

function popc(x: number): number {
  let n = 0;
  for (let i = 0; i < 32; i++) n += (x >>> i) & 1;
  return n;
}

function brev(x: number): number {
  let r = 0;
  for (let i = 0; i < 32; i++) r |= ((x >>> i) & 1) << (31 - i);
  return r;
}

function prmt(a: number, b: number, sel: number): number {
  const bytes = [0, 1, 2, 3].map((i) => (a >>> (8 * i)) & 0xff).concat([0, 1, 2, 3].map((i) => (b >>> (8 * i)) & 0xff));
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const nib = (sel >>> (4 * i)) & 0xf;
    let v = bytes[nib & 7]!;
    if (nib & 8) v = v & 0x80 ? 0xff : 0;
    r |= v << (8 * i);
  }
  return r;
}

const clampS32 = (x: bigint) => (x > 2147483647n ? 2147483647 : x < -2147483648n ? -2147483648 : Number(x));
const divOr = (q: () => number | bigint, zero: boolean, allOnes: number | bigint) => (zero ? allOnes : q());

export const INT_CASES: RefCase[] = [
  { kind: "b32", ptx: "add.s32 {d}, {a}, {b};", ref: (a, b) => a + b },
  { kind: "b32", ptx: "sub.u32 {d}, {a}, {b};", ref: (a, b) => a - b },
  { kind: "b32", ptx: "add.sat.s32 {d}, {a}, {b};", ref: (a, b) => clampS32(big(a) + big(b)) },
  { kind: "b32", ptx: "sub.sat.s32 {d}, {a}, {b};", ref: (a, b) => clampS32(big(a) - big(b)) },
  { kind: "b32", ptx: "mul.lo.s32 {d}, {a}, {b};", ref: (a, b) => Math.imul(a, b) },
  { kind: "b32", ptx: "mul.hi.s32 {d}, {a}, {b};", ref: (a, b) => Number(BigInt.asIntN(32, (big(a) * big(b)) >> 32n)) },
  { kind: "b32", ptx: "mul.hi.u32 {d}, {a}, {b};", ref: (a, b) => Number(BigInt.asIntN(32, (ubig(a) * ubig(b)) >> 32n)) },
  { kind: "b32", ptx: "mad.lo.s32 {d}, {a}, {b}, {c};", ref: (a, b, c) => Math.imul(a, b) + c },
  {
    kind: "b32",
    ptx: "mad.hi.u32 {d}, {a}, {b}, {c};",
    ref: (a, b, c) => Number(BigInt.asIntN(32, ((ubig(a) * ubig(b)) >> 32n) + ubig(c))),
  },
  {
    kind: "b32",
    ptx: "div.s32 {d}, {a}, {b};",
    ref: (a, b) => divOr(() => Number(BigInt.asIntN(32, big(a) / big(b))), s(b) === 0, -1),
  },
  { kind: "b32", ptx: "div.u32 {d}, {a}, {b};", ref: (a, b) => divOr(() => Math.floor(u(a) / u(b)), u(b) === 0, -1) },
  { kind: "b32", ptx: "rem.s32 {d}, {a}, {b};", ref: (a, b) => divOr(() => Number(big(a) % big(b)), s(b) === 0, -1) },
  { kind: "b32", ptx: "rem.u32 {d}, {a}, {b};", ref: (a, b) => divOr(() => u(a) % u(b), u(b) === 0, -1) },
  { kind: "b32", ptx: "min.s32 {d}, {a}, {b};", ref: (a, b) => Math.min(s(a), s(b)) },
  { kind: "b32", ptx: "max.s32 {d}, {a}, {b};", ref: (a, b) => Math.max(s(a), s(b)) },
  { kind: "b32", ptx: "min.u32 {d}, {a}, {b};", ref: (a, b) => Math.min(u(a), u(b)) },
  { kind: "b32", ptx: "max.u32 {d}, {a}, {b};", ref: (a, b) => Math.max(u(a), u(b)) },
  { kind: "b32", ptx: "abs.s32 {d}, {a};", ref: (a) => Math.abs(s(a)) },
  { kind: "b32", ptx: "neg.s32 {d}, {a};", ref: (a) => -s(a) },
  { kind: "b32", ptx: "and.b32 {d}, {a}, {b};", ref: (a, b) => a & b },
  { kind: "b32", ptx: "or.b32 {d}, {a}, {b};", ref: (a, b) => a | b },
  { kind: "b32", ptx: "xor.b32 {d}, {a}, {b};", ref: (a, b) => a ^ b },
  { kind: "b32", ptx: "not.b32 {d}, {a};", ref: (a) => ~a },
  { kind: "b32", ptx: "cnot.b32 {d}, {a};", ref: (a) => (a === 0 ? 1 : 0) },
  // Shift counts are unsigned and clamp at the width.
  { kind: "b32", ptx: "shl.b32 {d}, {a}, {c};", ref: (a, _b, c) => (u(c) >= 32 ? 0 : a << c) },
  { kind: "b32", ptx: "shr.u32 {d}, {a}, {c};", ref: (a, _b, c) => (u(c) >= 32 ? 0 : a >>> c) },
  { kind: "b32", ptx: "shr.s32 {d}, {a}, {c};", ref: (a, _b, c) => s(a) >> Math.min(u(c), 31) },
  { kind: "b32", ptx: "shr.b32 {d}, {a}, 4;", ref: (a) => a >>> 4 },
  { kind: "b32", ptx: "bfe.u32 {d}, {a}, {b}, {c};", ref: (a, b, c) => bfe(a, b, c, false) },
  { kind: "b32", ptx: "bfe.s32 {d}, {a}, {b}, {c};", ref: (a, b, c) => bfe(a, b, c, true) },
  { kind: "b32", ptx: "bfe.s32 {d}, {a}, 4, 8;", ref: (a) => bfe(a, 4, 8, true) },
  {
    kind: "b32",
    ptx: "bfi.b32 {d}, {a}, {b}, 8, 12;",
    ref: (a, b) => (b & ~(0xfff << 8)) | ((a & 0xfff) << 8),
  },
  { kind: "b32", ptx: "prmt.b32 {d}, {a}, {b}, {c};", ref: (a, b, c) => prmt(a, b, c) },
  { kind: "b32", ptx: "prmt.b32 {d}, {a}, {b}, 0x5410;", ref: (a, b) => prmt(a, b, 0x5410) },
  { kind: "b32", ptx: "popc.b32 {d}, {a};", ref: (a) => popc(a) },
  { kind: "b32", ptx: "clz.b32 {d}, {a};", ref: (a) => Math.clz32(a) },
  { kind: "b32", ptx: "brev.b32 {d}, {a};", ref: (a) => brev(a) },
  // 0x96 is a ^ b ^ c; 0xE8 is the majority function.
  { kind: "b32", ptx: "lop3.b32 {d}, {a}, {b}, {c}, 0x96;", ref: (a, b, c) => a ^ b ^ c },
  { kind: "b32", ptx: "lop3.b32 {d}, {a}, {b}, {c}, 0xE8;", ref: (a, b, c) => (a & b) | (a & c) | (b & c) },
  {
    kind: "b32",
    ptx: "cvt.u16.u32 %h1, {a}; cvt.u16.u32 %h2, {b}; add.u16 %h3, %h1, %h2; cvt.u32.u16 {d}, %h3;",
    ref: (a, b) => (a + b) & 0xffff,
  },
  {
    kind: "b32",
    ptx: "cvt.u16.u32 %h1, {a}; cvt.u16.u32 %h2, {b}; min.s16 %h3, %h1, %h2; cvt.s32.s16 {d}, %h3;",
    ref: (a, b) => Math.min((a << 16) >> 16, (b << 16) >> 16),
  },
  {
    kind: "b32",
    ptx: "cvt.u16.u32 %h1, {a}; shr.s16 %h2, %h1, 3; cvt.u32.u16 {d}, %h2;",
    ref: (a) => (((a << 16) >> 16) >> 3) & 0xffff,
  },
  { kind: "b32", ptx: "cvt.s32.s8 {d}, {a};", ref: (a) => (a << 24) >> 24 },
  { kind: "b32", ptx: "cvt.u32.u8 {d}, {a};", ref: (a) => a & 0xff },
  { kind: "b32", ptx: "cvt.sat.s8.s32 {d}, {a};", ref: (a) => Math.max(-128, Math.min(127, s(a))) },
  { kind: "b32", ptx: "cvt.sat.u16.s32 {d}, {a};", ref: (a) => Math.max(0, Math.min(65535, s(a))) },
  { kind: "b32", ptx: "cvt.sat.u32.s32 {d}, {a};", ref: (a) => Math.max(0, s(a)) },
  // 64-bit
  { kind: "b64", ptx: "add.s64 {d}, {a}, {b};", ref: (a, b, c) => A64(a, b) + B64(a, b, c) },
  { kind: "b64", ptx: "sub.s64 {d}, {a}, {b};", ref: (a, b, c) => A64(a, b) - B64(a, b, c) },
  { kind: "b64", ptx: "mul.lo.u64 {d}, {a}, {b};", ref: (a, b, c) => A64(a, b) * B64(a, b, c) },
  { kind: "b64", ptx: "mul.hi.u64 {d}, {a}, {b};", ref: (a, b, c) => (A64(a, b) * B64(a, b, c)) >> 64n },
  { kind: "b64", ptx: "mul.hi.s64 {d}, {a}, {b};", ref: (a, b, c) => (s64(A64(a, b)) * s64(B64(a, b, c))) >> 64n },
  { kind: "b64", ptx: "mad.lo.s64 {d}, {a}, {b}, {c};", ref: (a, b, c) => A64(a, b) * B64(a, b, c) + C64(a, b, c) },
  { kind: "b64", ptx: "mul.lo.s64 {d}, {a}, 3;", ref: (a, b) => A64(a, b) * 3n },
  {
    kind: "b64",
    ptx: "div.s64 {d}, {a}, {b};",
    ref: (a, b, c) => divOr(() => s64(A64(a, b)) / s64(B64(a, b, c)), B64(a, b, c) === 0n, -1n),
  },
  {
    kind: "b64",
    ptx: "rem.u64 {d}, {a}, {b};",
    ref: (a, b, c) => divOr(() => A64(a, b) % B64(a, b, c), B64(a, b, c) === 0n, -1n),
  },
  {
    kind: "b64",
    ptx: "min.s64 {d}, {a}, {b};",
    ref: (a, b, c) => (s64(A64(a, b)) < s64(B64(a, b, c)) ? A64(a, b) : B64(a, b, c)),
  },
  {
    kind: "b64",
    ptx: "max.u64 {d}, {a}, {b};",
    ref: (a, b, c) => {
      const [x, y] = [A64(a, b), B64(a, b, c)];
      if (x > y) return x;
      return y;
    },
  },
  { kind: "b64", ptx: "abs.s64 {d}, {a};", ref: (a, b) => (s64(A64(a, b)) < 0n ? -s64(A64(a, b)) : A64(a, b)) },
  { kind: "b64", ptx: "neg.s64 {d}, {a};", ref: (a, b) => -A64(a, b) },
  { kind: "b64", ptx: "xor.b64 {d}, {a}, {b};", ref: (a, b, c) => A64(a, b) ^ B64(a, b, c) },
  { kind: "b64", ptx: "not.b64 {d}, {a};", ref: (a, b) => ~A64(a, b) },
  { kind: "b64", ptx: "shl.b64 {d}, {a}, %ic;", ref: (a, b, c) => (u(c) >= 64 ? 0n : A64(a, b) << BigInt(u(c))) },
  { kind: "b64", ptx: "shr.u64 {d}, {a}, %ic;", ref: (a, b, c) => (u(c) >= 64 ? 0n : A64(a, b) >> BigInt(u(c))) },
  { kind: "b64", ptx: "shr.s64 {d}, {a}, %ic;", ref: (a, b, c) => s64(A64(a, b)) >> BigInt(Math.min(u(c), 63)) },
  { kind: "b64", ptx: "mul.wide.s32 {d}, %ia, %ib;", ref: (a, b) => big(a) * big(b) },
  { kind: "b64", ptx: "mul.wide.u32 {d}, %ia, %ib;", ref: (a, b) => ubig(a) * ubig(b) },
  { kind: "b64", ptx: "mad.wide.s32 {d}, %ia, %ib, {c};", ref: (a, b, c) => big(a) * big(b) + C64(a, b, c) },
  { kind: "b64", ptx: "mad.wide.u32 {d}, %ia, %ib, {c};", ref: (a, b, c) => ubig(a) * ubig(b) + C64(a, b, c) },
  { kind: "b64", ptx: "cvt.s64.s32 {d}, %ia;", ref: (a) => big(a) },
  { kind: "b64", ptx: "cvt.u64.s32 {d}, %ia;", ref: (a) => big(a) },
  { kind: "b64", ptx: "cvt.u64.u32 {d}, %ia;", ref: (a) => ubig(a) },
  { kind: "b64", ptx: "cvt.u32.u64 %t1, {a}; cvt.u64.u32 {d}, %t1;", ref: (a) => ubig(a) },
  { kind: "b64", ptx: "cvt.sat.s32.s64 %t1, {a}; cvt.s64.s32 {d}, %t1;", ref: (a, b) => BigInt(clampS32(s64(A64(a, b)))) },
  { kind: "b64", ptx: "popc.b64 %t1, {a}; cvt.u64.u32 {d}, %t1;", ref: (a, b) => BigInt(popc(a) + popc(b)) },
  {
    kind: "b64",
    ptx: "clz.b64 %t1, {a}; cvt.u64.u32 {d}, %t1;",
    ref: (a, b) => BigInt(b !== 0 ? Math.clz32(b) : 32 + Math.clz32(a)),
  },
  { kind: "b64", ptx: "brev.b64 {d}, {a};", ref: (a, b) => (ubig(brev(a)) << 32n) | ubig(brev(b)) },
  {
    kind: "b64",
    ptx: "setp.lt.s64 %p1, {a}, {b}; selp.b64 {d}, {a}, {b}, %p1;",
    ref: (a, b, c) => (s64(A64(a, b)) < s64(B64(a, b, c)) ? A64(a, b) : B64(a, b, c)),
  },
  {
    kind: "b64",
    ptx: "setp.hi.u64 %p1, {a}, {b}; selp.b64 {d}, 1, 0, %p1;",
    ref: (a, b, c) => (A64(a, b) > B64(a, b, c) ? 1n : 0n),
  },
  {
    kind: "b64",
    ptx: "mov.b64 {%t1, %t2}, {a}; mov.b64 {d}, {%t2, %t1};",
    ref: (a, b) => (ubig(a) << 32n) | ubig(b),
  },
];

export const INT_ROWS: [number, number, number][] = [
  [0, 0, 0],
  [1, 2, 3],
  [-1, 1, 1],
  [0x7fffffff, 1, 31],
  [0x80000000, -1, 32],
  [0x80000000, 0x80000000, 33],
  [12345, -678, 5],
  [-12345, 678, 63],
  [0xdeadbeef, 0xcafebabe, 64],
  [0x12345678, 0x9abcdef0, 0x3210],
  [-7, 2, 0x7654],
  [7, -2, 0x8888],
  [100, 0, 17],
  [0xffff8000, 0x00007fff, 4],
  [0x00010000, 0x00010000, 16],
  [123456789, 987654321, 40],
  [0x40000000, 4, 30],
  [-2147483647, -2, 1],
  [65535, 65535, 8],
  [0x0f0f0f0f, 0xf0f0f0f0, 0x76543210],
];

export const intAluPtx = opTableKernel("intAlu", INT_CASES);
