// Integer arithmetic: add sub mul mad div rem abs neg min max on .s16/.u16/.s32/.u32/.s64/.u64.
// 32-bit values live in one Int32Array slot; 64-bit values in a slot pair (low word first) and are handled on
// the halves where that is exact and cheap (add/sub) or through BigInt (the rare 64-bit mul/div/rem/min/max).
// 16-bit values are kept zero-extended in their slot.

import type { Instruction } from "./ast.ts";
import { CLS, type Decoded, type ExecEnv } from "./machine.ts";
import { mulHi32, mulWideS32, mulWideU32, TWO32 } from "./numeric.ts";
import type { DecodeContext, Mods } from "./operands.ts";

const INT_TYPES = ["s16", "u16", "s32", "u32", "s64", "u64"] as const;

type Bin32 = (x: number, y: number) => number;
type Big = (x: bigint, y: bigint) => bigint;

function widthOf(t: string): 16 | 32 | 64 {
  return t.endsWith("64") ? 64 : t.endsWith("16") ? 16 : 32;
}

/** A 32-bit-or-narrower binary op through a callback (less hot ops); signed inputs are sign-extended. */
function small(ctx: DecodeContext, ins: Instruction, type: string, f: Bin32): Decoded {
  const [d, a, c] = ctx.operands(3);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sc = ctx.src(c, type);
  const signed = type[0] === "s";
  const w = widthOf(type);
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build(env, next) {
      const { i32, u32 } = env;
      if (w === 32) {
        if (signed)
          return (b) => {
            i32[b + sd] = f(i32[b + sa]!, i32[b + sc]!);
            return next;
          };
        return (b) => {
          i32[b + sd] = f(u32[b + sa]!, u32[b + sc]!);
          return next;
        };
      }
      if (signed)
        return (b) => {
          i32[b + sd] = f((i32[b + sa]! << 16) >> 16, (i32[b + sc]! << 16) >> 16) & 0xffff;
          return next;
        };
      return (b) => {
        i32[b + sd] = f(i32[b + sa]! & 0xffff, i32[b + sc]! & 0xffff) & 0xffff;
        return next;
      };
    },
  };
}

/** A 64-bit binary op through BigInt (exact, slower). */
function big64(ctx: DecodeContext, ins: Instruction, type: string, f: Big, cls = CLS.intAlu): Decoded {
  const [d, a, c] = ctx.operands(3);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sc = ctx.src(c, type);
  const signed = type[0] === "s";
  return {
    cls,
    at: ins.at,
    build(env, next) {
      const { i64 } = env;
      if (signed)
        return (b) => {
          i64[(b + sd) >> 1] = BigInt.asIntN(64, f(i64[(b + sa) >> 1]!, i64[(b + sc) >> 1]!));
          return next;
        };
      return (b) => {
        i64[(b + sd) >> 1] = BigInt.asIntN(
          64,
          f(BigInt.asUintN(64, i64[(b + sa) >> 1]!), BigInt.asUintN(64, i64[(b + sc) >> 1]!)),
        );
        return next;
      };
    },
  };
}

function add64(ctx: DecodeContext, ins: Instruction, type: string, subtract: boolean): Decoded {
  const [d, a, c] = ctx.operands(3);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sc = ctx.src(c, type);
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, u32 }, next) {
      if (subtract)
        return (b) => {
          const lo = u32[b + sa]! - u32[b + sc]!;
          i32[b + sd + 1] = (i32[b + sa + 1]! - i32[b + sc + 1]! - (lo < 0 ? 1 : 0)) | 0;
          i32[b + sd] = lo | 0;
          return next;
        };
      return (b) => {
        const lo = u32[b + sa]! + u32[b + sc]!;
        i32[b + sd + 1] = (i32[b + sa + 1]! + i32[b + sc + 1]! + (lo > 0xffffffff ? 1 : 0)) | 0;
        i32[b + sd] = lo | 0;
        return next;
      };
    },
  };
}

function addSub(ctx: DecodeContext, ins: Instruction, m: Mods, subtract: boolean): Decoded {
  const sat = m.flag("sat");
  m.flag("cc") && ctx.fail(`${m.base}.cc (carry chains) is not implemented`);
  const type = m.type(INT_TYPES);
  m.done();
  if (sat && type !== "s32") ctx.fail(`${m.base}.sat is only defined for .s32`);
  const w = widthOf(type);
  if (w === 64) return add64(ctx, ins, type, subtract);
  if (sat) {
    const f: Bin32 = subtract ? (x, y) => clampS32(x - y) : (x, y) => clampS32(x + y);
    return small(ctx, ins, type, f);
  }
  if (w === 16) return small(ctx, ins, type, subtract ? (x, y) => x - y : (x, y) => x + y);
  const [d, a, c] = ctx.operands(3);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sc = ctx.src(c, type);
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      if (subtract)
        return (b) => {
          i32[b + sd] = (i32[b + sa]! - i32[b + sc]!) | 0;
          return next;
        };
      return (b) => {
        i32[b + sd] = (i32[b + sa]! + i32[b + sc]!) | 0;
        return next;
      };
    },
  };
}

function clampS32(x: number): number {
  return x > 2147483647 ? 2147483647 : Math.max(x, -2147483648);
}

function mul(ctx: DecodeContext, ins: Instruction, m: Mods, withAdd: boolean): Decoded {
  const mode = m.take("lo", "hi", "wide");
  if (!mode) ctx.fail(`${m.base} on integers needs .lo, .hi or .wide`);
  m.flag("sat") && ctx.fail(`${m.base}.sat is not implemented`);
  const type = m.type(INT_TYPES);
  m.done();
  const w = widthOf(type);
  const signed = type[0] === "s";
  const ops = ctx.operands(withAdd ? 4 : 3);
  if (mode === "wide") {
    if (w === 64) ctx.fail(`${m.base}.wide is not defined for 64-bit types`);
    const wideType = `${type[0]}${w * 2}`;
    const sd = ctx.dst(ops[0], wideType);
    const sa = ctx.src(ops[1], type);
    const sc = ctx.src(ops[2], type);
    const se = withAdd ? ctx.src(ops[3], wideType) : -1;
    if (w === 16) {
      return {
        cls: CLS.intAlu,
        at: ins.at,
        build({ i32 }, next) {
          const rd = (v: number) => (signed ? (v << 16) >> 16 : v & 0xffff);
          return (b) => {
            i32[b + sd] = (Math.imul(rd(i32[b + sa]!), rd(i32[b + sc]!)) + (se >= 0 ? i32[b + se]! : 0)) | 0;
            return next;
          };
        },
      };
    }
    return {
      cls: CLS.intAlu,
      at: ins.at,
      build({ i32, u32 }, next) {
        const product = signed
          ? (b: number) => mulWideS32(i32[b + sa]!, i32[b + sc]!, i32, b + sd)
          : (b: number) => mulWideU32(u32[b + sa]!, u32[b + sc]!, i32, b + sd);
        if (se < 0)
          return (b) => {
            product(b);
            return next;
          };
        return (b) => {
          const eLo = u32[b + se]!;
          const eHi = i32[b + se + 1]!;
          product(b);
          const lo = u32[b + sd]! + eLo;
          i32[b + sd + 1] = (i32[b + sd + 1]! + eHi + (lo > 0xffffffff ? 1 : 0)) | 0;
          i32[b + sd] = lo | 0;
          return next;
        };
      },
    };
  }
  const sd = ctx.dst(ops[0], type);
  const sa = ctx.src(ops[1], type);
  const sc = ctx.src(ops[2], type);
  const se = withAdd ? ctx.src(ops[3], type) : -1;
  if (w === 64) {
    const shift = mode === "hi" ? 64n : 0n;
    return {
      cls: CLS.intAlu,
      at: ins.at,
      build({ i32, u32, i64 }, next) {
        const read = (b: number, s: number): bigint => (signed ? i64[(b + s) >> 1]! : BigInt.asUintN(64, i64[(b + s) >> 1]!));
        return (b) => {
          // fast path: both operands and the product are exact doubles
          const x = i32[b + sa + 1]! * TWO32 + u32[b + sa]!;
          const y = i32[b + sc + 1]! * TWO32 + u32[b + sc]!;
          const p = x * y;
          const ha = i32[b + sa + 1]!;
          const hc = i32[b + sc + 1]!;
          const exact = ha < 2097152 && ha >= -2097152 && hc < 2097152 && hc >= -2097152;
          if (mode === "lo" && se < 0 && exact && p <= 9007199254740991 && p >= -9007199254740991) {
            i32[b + sd] = p | 0;
            i32[b + sd + 1] = Math.floor(p / TWO32);
            return next;
          }
          let r = (read(b, sa) * read(b, sc)) >> shift;
          if (se >= 0) r += read(b, se);
          i64[(b + sd) >> 1] = BigInt.asIntN(64, r);
          return next;
        };
      },
    };
  }
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, u32 }, next) {
      if (w === 16) {
        const rd = (v: number) => (signed ? (v << 16) >> 16 : v & 0xffff);
        return (b) => {
          const p = rd(i32[b + sa]!) * rd(i32[b + sc]!);
          const r = mode === "hi" ? p >> 16 : p;
          i32[b + sd] = (r + (se >= 0 ? i32[b + se]! : 0)) & 0xffff;
          return next;
        };
      }
      if (mode === "hi") {
        if (signed)
          return (b) => {
            i32[b + sd] = (mulHi32(i32[b + sa]!, i32[b + sc]!, true) + (se >= 0 ? i32[b + se]! : 0)) | 0;
            return next;
          };
        return (b) => {
          i32[b + sd] = (mulHi32(u32[b + sa]!, u32[b + sc]!, false) + (se >= 0 ? i32[b + se]! : 0)) | 0;
          return next;
        };
      }
      if (se >= 0)
        return (b) => {
          i32[b + sd] = (Math.imul(i32[b + sa]!, i32[b + sc]!) + i32[b + se]!) | 0;
          return next;
        };
      return (b) => {
        i32[b + sd] = Math.imul(i32[b + sa]!, i32[b + sc]!);
        return next;
      };
    },
  };
}

/** PTX leaves integer division by zero undefined; the emulator returns all ones (as the hardware does for .u32). */
function divRem(ctx: DecodeContext, ins: Instruction, m: Mods, rem: boolean): Decoded {
  const type = m.type(INT_TYPES);
  m.done();
  const w = widthOf(type);
  if (w === 64) {
    return big64(ctx, ins, type, rem ? (x, y) => (y === 0n ? -1n : x % y) : (x, y) => (y === 0n ? -1n : x / y));
  }
  const f: Bin32 = rem ? (x, y) => (y === 0 ? -1 : (x % y) | 0) : (x, y) => (y === 0 ? -1 : Math.trunc(x / y) | 0);
  return small(ctx, ins, type, f);
}

function bigMax(x: bigint, y: bigint): bigint {
  if (x > y) return x;
  return y;
}

function bigMin(x: bigint, y: bigint): bigint {
  if (x < y) return x;
  return y;
}

function minMax(ctx: DecodeContext, ins: Instruction, m: Mods, max: boolean): Decoded {
  const type = m.type(INT_TYPES);
  m.done();
  if (widthOf(type) === 64) return big64(ctx, ins, type, max ? bigMax : bigMin);
  return small(ctx, ins, type, max ? (x, y) => Math.max(x, y) : (x, y) => Math.min(x, y));
}

function unary(ctx: DecodeContext, ins: Instruction, m: Mods, abs: boolean): Decoded {
  const type = m.type(["s16", "s32", "s64"]);
  m.done();
  const [d, a] = ctx.operands(2);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const w = widthOf(type);
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, i64 }: ExecEnv, next) {
      if (w === 64) {
        return (b) => {
          const x = i64[(b + sa) >> 1]!;
          i64[(b + sd) >> 1] = BigInt.asIntN(64, abs && x >= 0n ? x : -x);
          return next;
        };
      }
      if (w === 16)
        return (b) => {
          const x = (i32[b + sa]! << 16) >> 16;
          i32[b + sd] = (abs && x >= 0 ? x : -x) & 0xffff;
          return next;
        };
      return (b) => {
        const x = i32[b + sa]!;
        i32[b + sd] = (abs && x >= 0 ? x : -x) | 0;
        return next;
      };
    },
  };
}

export function isIntType(type: string | undefined): boolean {
  return type !== undefined && /^[su](16|32|64)$/.test(type);
}

/** Integer forms of add sub mul mad div rem abs neg min max. */
export function decodeIntArith(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  switch (m.base) {
    case "add":
      return addSub(ctx, ins, m, false);
    case "sub":
      return addSub(ctx, ins, m, true);
    case "mul":
      return mul(ctx, ins, m, false);
    case "mad":
      return mul(ctx, ins, m, true);
    case "div":
      return divRem(ctx, ins, m, false);
    case "rem":
      return divRem(ctx, ins, m, true);
    case "min":
      return minMax(ctx, ins, m, false);
    case "max":
      return minMax(ctx, ins, m, true);
    case "abs":
      return unary(ctx, ins, m, true);
    case "neg":
      return unary(ctx, ins, m, false);
  }
  return ctx.fail(`${m.base} is not an integer arithmetic instruction`);
}
