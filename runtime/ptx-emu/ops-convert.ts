// Data movement and conversion: mov (incl. packing/unpacking with {..}), cvt between every integer width,
// f16/bf16/f32/f64 with rounding modifiers (.rn .rz .rm .rp, .rni .rzi .rmi .rpi, .sat, .ftz, .relu,
// .satfinite), the packed `cvt.rn.bf16x2.f32 d, a, b` (a -> upper half), and cvta between generic and
// state-space addresses.

import type { Instruction } from "./ast.ts";
import { widthOfType } from "./layout.ts";
import { CLS, type Decoded, type ExecEnv } from "./machine.ts";
import { SHARED_WINDOW } from "./memory.ts";
import {
  BF16_FORMAT,
  bf16ToF32,
  F16_FORMAT,
  f16ToF32,
  f32BitsToBf16Rn,
  f32BitsToBf16Rz,
  flushSubnormal,
  type RoundMode,
  roundToF32,
  roundToIntegral,
  TWO32,
  toSmallFloat,
} from "./numeric.ts";
import type { DecodeContext, Mods } from "./operands.ts";

function mov(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const type = m.type(["pred", "b16", "b32", "b64", "u16", "u32", "u64", "s16", "s32", "s64", "f16", "bf16", "f32", "f64"]);
  m.done();
  const [d, a] = ctx.operands(2);
  const w = widthOfType(type);
  // Packing {lo, ..., hi} into one register, or unpacking one register into {lo, ..., hi}.
  if (d?.kind === "vec" || a?.kind === "vec") {
    const vec = d?.kind === "vec" ? d : a;
    if (vec?.kind !== "vec") return ctx.fail("bad vector operand");
    const n = vec.items.length;
    const part = w / n;
    if ((w !== 32 && w !== 64) || (part !== 16 && part !== 32) || !Number.isInteger(part))
      ctx.fail(`mov.${type} cannot split into ${n} parts`);
    const partType = `b${part}`;
    if (d?.kind === "vec") {
      const parts = vec.items.map((it) => (it.kind === "sink" ? -1 : ctx.dst(it, partType)));
      const sa = ctx.src(a, type);
      return {
        cls: CLS.intAlu,
        at: ins.at,
        build({ i32, u32 }, next) {
          return (b) => {
            for (let k = 0; k < n; k++) {
              if (parts[k]! < 0) continue;
              if (part === 32) i32[b + parts[k]!] = i32[b + sa + k]!;
              else i32[b + parts[k]!] = (u32[b + sa + (k >> 1)]! >>> ((k & 1) * 16)) & 0xffff;
            }
            return next;
          };
        },
      };
    }
    const parts = vec.items.map((it) => ctx.src(it, partType));
    const sd = ctx.dst(d, type);
    return {
      cls: CLS.intAlu,
      at: ins.at,
      build({ i32 }, next) {
        return (b) => {
          if (part === 32) {
            const lo = i32[b + parts[0]!]!;
            i32[b + sd + 1] = i32[b + parts[1]!]!;
            i32[b + sd] = lo;
          } else {
            const v = parts.map((p) => i32[b + p]! & 0xffff);
            for (let k = 0; k < n; k += 2) i32[b + sd + (k >> 1)] = v[k]! | (v[k + 1]! << 16);
          }
          return next;
        };
      },
    };
  }
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      if (w === 64)
        return (b) => {
          i32[b + sd] = i32[b + sa]!;
          i32[b + sd + 1] = i32[b + sa + 1]!;
          return next;
        };
      return (b) => {
        i32[b + sd] = i32[b + sa]!;
        return next;
      };
    },
  };
}

type Num = number | bigint;
/** Ranges of the integer types up to 32 bits (64-bit ranges are handled with bigint). */
const INT_RANGE: Record<string, [number, number]> = {
  u8: [0, 255],
  s8: [-128, 127],
  u16: [0, 65535],
  s16: [-32768, 32767],
  u32: [0, 4294967295],
  s32: [-2147483648, 2147483647],
  u64: [0, 2 ** 64],
  s64: [-(2 ** 63), 2 ** 63],
};
const isInt = (t: string) => t in INT_RANGE;
const isFloat = (t: string) => t === "f16" || t === "bf16" || t === "f32" || t === "f64";

/** Reads a source operand of type `t` as an exact number (or bigint for 64-bit integers beyond 2^53). */
function reader(env: ExecEnv, t: string, s: number): (b: number) => Num {
  const { i32, u32, f32, f64, i64 } = env;
  switch (t) {
    case "u8":
      return (b) => i32[b + s]! & 0xff;
    case "s8":
      return (b) => (i32[b + s]! << 24) >> 24;
    case "u16":
      return (b) => i32[b + s]! & 0xffff;
    case "s16":
      return (b) => (i32[b + s]! << 16) >> 16;
    case "u32":
      return (b) => u32[b + s]!;
    case "s32":
      return (b) => i32[b + s]!;
    case "u64":
      return (b) => {
        const hi = u32[b + s + 1]!;
        return hi < 2097152 ? hi * TWO32 + u32[b + s]! : BigInt.asUintN(64, i64[(b + s) >> 1]!);
      };
    case "s64":
      return (b) => {
        const hi = i32[b + s + 1]!;
        return hi < 2097152 && hi >= -2097152 ? hi * TWO32 + u32[b + s]! : i64[(b + s) >> 1]!;
      };
    case "f32":
      return (b) => f32[b + s]!;
    case "f64":
      return (b) => f64[(b + s) >> 1]!;
    case "f16":
      return (b) => f16ToF32(i32[b + s]! & 0xffff);
    case "bf16":
      return (b) => bf16ToF32(i32[b + s]! & 0xffff);
  }
  throw new Error(`internal: no reader for .${t}`);
}

/** Writes an integer value (already in the range of `t`) into a register of `regWidth` bits, extended by `t`. */
function intWriter(env: ExecEnv, regWidth: number, s: number): (b: number, v: Num) => void {
  const { i32, i64 } = env;
  if (regWidth === 64)
    return (b, v) => {
      if (typeof v === "bigint") i64[(b + s) >> 1] = BigInt.asIntN(64, v);
      else {
        i32[b + s] = v | 0;
        i32[b + s + 1] = Math.floor(v / TWO32);
      }
    };
  const mask = regWidth === 32 ? -1 : regWidth === 16 ? 0xffff : 0xff;
  return (b, v) => {
    i32[b + s] = (typeof v === "bigint" ? Number(BigInt.asIntN(32, v)) : v | 0) & mask;
  };
}

/** Wraps an exact integer to the width and signedness of `t` (truncation of two's complement bits). */
function wrapInt(v: Num, t: string): Num {
  const bits = Number(t.slice(1));
  const signed = t[0] === "s";
  if (bits === 64) {
    const big = typeof v === "bigint" ? v : BigInt(v);
    const r = signed ? BigInt.asIntN(64, big) : BigInt.asUintN(64, big);
    return r <= 9007199254740991n && r >= -9007199254740991n ? Number(r) : r;
  }
  const n = typeof v === "bigint" ? Number(BigInt.asIntN(32, v)) : v;
  if (bits === 32) return signed ? n | 0 : n >>> 0;
  const shift = 32 - bits;
  return signed ? (n << shift) >> shift : (n << shift) >>> shift;
}

/** `.sat` integer conversion: clamp the exact source value to the range of `t`. */
function clampInt(v: Num, t: string): Num {
  const bits = BigInt(t.slice(1));
  const lo = t[0] === "s" ? -(1n << (bits - 1n)) : 0n;
  const hi = t[0] === "s" ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  const x = typeof v === "bigint" ? v : BigInt(v);
  const r = x < lo ? lo : x > hi ? hi : x;
  return r <= 9007199254740991n && r >= -9007199254740991n ? Number(r) : r;
}

/**
 * Float -> integer: round, then saturate to the destination range (PTX cvt always saturates here). NaN gives 0,
 * except for 64-bit destinations where the hardware gives 0x8000000000000000 (observed on an H200).
 */
function floatToInt(x: number, mode: RoundMode, t: string): Num {
  if (Number.isNaN(x)) return t.endsWith("64") ? -(2n ** 63n) : 0;
  const r = roundToIntegral(x, mode);
  if (t === "u64") {
    if (r <= 0) return 0;
    if (r >= 2 ** 64) return 18446744073709551615n;
    return r <= 9007199254740991 ? r : BigInt(r);
  }
  if (t === "s64") {
    if (r >= 2 ** 63) return 9223372036854775807n;
    if (r <= -(2 ** 63)) return -9223372036854775808n;
    return Math.abs(r) <= 9007199254740991 ? r : BigInt(r);
  }
  const [lo, hi] = INT_RANGE[t]!;
  return r < lo ? lo : r > hi ? hi : r + 0; // + 0 turns -0 into 0
}

/** Exact integer -> f32 with a rounding mode. */
function intToF32(v: Num, mode: RoundMode): number {
  if (typeof v === "number") return roundToF32(v, 0, mode);
  const n = Number(v);
  return roundToF32(n, Number(v - BigInt(n)), mode);
}

function cvt(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const frnd = m.take("rn", "rz", "rm", "rp") as RoundMode | undefined;
  const irndMod = m.take("rni", "rzi", "rmi", "rpi");
  const irnd = irndMod ? (irndMod.slice(0, 2) as RoundMode) : undefined;
  const ftz = m.flag("ftz");
  const sat = m.flag("sat");
  const relu = m.flag("relu");
  const satfinite = m.flag("satfinite");
  const types = m.types();
  m.done();
  if (types.length !== 2) ctx.fail("cvt needs a destination and a source type (cvt.dtype.atype)");
  const [dt, at] = types as [string, string];
  const packed = dt === "bf16x2" || dt === "f16x2";
  if (packed && at !== "f32") ctx.fail(`cvt.${dt}.${at} is not implemented (only from .f32)`);
  const elemT = packed ? dt.slice(0, -2) : dt;
  if (!isInt(dt) && !isFloat(elemT)) ctx.fail(`cvt to .${dt} is not implemented`);
  if (!isInt(at) && !isFloat(at)) ctx.fail(`cvt from .${at} is not implemented`);
  if (frnd && irnd) ctx.fail("cvt takes one rounding modifier");
  if ((relu || satfinite) && !(elemT === "bf16" || elemT === "f16"))
    ctx.fail("cvt .relu/.satfinite are only defined for f16/bf16 results");
  const fromFloat = isFloat(at);
  const toFloat = isFloat(elemT);
  if (fromFloat && !toFloat && !irnd) ctx.fail(`cvt.${dt}.${at} (float to integer) requires .rni, .rzi, .rmi or .rpi`);
  if (!fromFloat && toFloat && irnd) ctx.fail("an integer rounding modifier cannot convert an integer to a float");
  if (!fromFloat && !toFloat && (frnd || irnd)) ctx.fail("integer-to-integer cvt takes no rounding modifier");
  if (fromFloat && toFloat && irnd && at !== elemT)
    ctx.fail("integer rounding (.rni ...) needs the same float source and destination type");
  const narrowing = (at === "f64" && elemT !== "f64") || (at === "f32" && (elemT === "f16" || elemT === "bf16"));
  if (toFloat && !irnd && !frnd && (narrowing || !fromFloat))
    ctx.fail(`cvt.${dt}.${at} requires a rounding modifier (.rn .rz .rm .rp)`);
  const mode: RoundMode = irnd ?? frnd ?? "rn";
  if (elemT === "bf16" && fromFloat && at === "f32" && mode !== "rn" && mode !== "rz")
    ctx.fail(`cvt.${mode}.bf16.f32 is not defined on sm_80 (only .rn and .rz)`);

  const ops = ctx.operands(packed ? 3 : 2);
  const wide = { wider: true };
  const sd = ctx.dst(ops[0], packed ? "b32" : dt, wide);
  const sa = ctx.src(ops[1], at, wide);
  const sb = packed ? ctx.src(ops[2], at) : -1;
  const regWidth = ctx.layout.lookup((ops[0] as { name: string }).name)!.width;

  // The value of an f16/bf16/f32/f64 result as its bits.
  const toFloatBits = (x: number): number => {
    if (ftz && at === "f32") x = flushSubnormal(x);
    if (relu && x <= 0) x = 0; // -0 too (observed on hardware)
    if (sat) x = x > 0 ? Math.min(x, 1) : 0;
    if (satfinite && !Number.isNaN(x)) {
      const max = elemT === "bf16" ? 3.3895313892515355e38 : 65504;
      if (x > max) x = max;
      if (x < -max) x = -max;
    }
    return toSmallFloat(x, mode, elemT === "bf16" ? BF16_FORMAT : F16_FORMAT);
  };
  const hotBf16 = elemT === "bf16" && at === "f32" && !ftz && !sat && !relu && !satfinite;
  const bf16Round = mode === "rz" ? f32BitsToBf16Rz : f32BitsToBf16Rn;
  const isF32 = elemT === "f32";

  return {
    cls: fromFloat || toFloat ? CLS.floatAlu : CLS.intAlu,
    at: ins.at,
    build(env, next) {
      const { i32, u32, f32, f64 } = env;
      if (packed) {
        const conv = hotBf16
          ? (b: number, s: number) => bf16Round(u32[b + s]!)
          : (b: number, s: number) => toFloatBits(f32[b + s]!);
        return (b) => {
          i32[b + sd] = conv(b, sb) | (conv(b, sa) << 16);
          return next;
        };
      }
      if (hotBf16)
        return (b) => {
          i32[b + sd] = bf16Round(u32[b + sa]!);
          return next;
        };
      // Hot integer widenings/narrowings of address arithmetic.
      if (!fromFloat && !toFloat && !sat && regWidth >= 32) {
        if (dt === "u64" && at === "u32")
          return (b) => {
            i32[b + sd] = i32[b + sa]!;
            i32[b + sd + 1] = 0;
            return next;
          };
        if ((dt === "s64" || dt === "u64") && at === "s32")
          return (b) => {
            i32[b + sd] = i32[b + sa]!;
            i32[b + sd + 1] = i32[b + sa]! >> 31;
            return next;
          };
        if ((dt === "u32" || dt === "s32") && (at === "u64" || at === "s64" || at === "u32" || at === "s32") && regWidth === 32)
          return (b) => {
            i32[b + sd] = i32[b + sa]!;
            return next;
          };
      }
      const read = reader(env, at, sa);
      if (toFloat) {
        if (elemT === "f16" || elemT === "bf16") {
          return (b) => {
            const v = read(b);
            i32[b + sd] = toFloatBits(typeof v === "bigint" ? Number(v) : v);
            return next;
          };
        }
        const convert = (v: Num): number => {
          if (irnd) return roundToIntegral(v as number, irnd);
          if (!fromFloat) return isF32 ? intToF32(v, mode) : Number(v);
          return isF32 ? roundToF32(v as number, 0, mode) : (v as number);
        };
        const post = (x: number): number => {
          if (isF32 && ftz) x = flushSubnormal(Math.fround(x));
          return sat ? (x > 0 ? Math.min(x, 1) : 0) : x;
        };
        const pre = (v: Num): Num => (ftz && at === "f32" ? flushSubnormal(v as number) : v);
        if (isF32)
          return (b) => {
            f32[b + sd] = post(convert(pre(read(b))));
            return next;
          };
        return (b) => {
          f64[(b + sd) >> 1] = post(convert(pre(read(b))));
          return next;
        };
      }
      const write = intWriter(env, regWidth, sd);
      if (fromFloat)
        return (b) => {
          let x = read(b) as number;
          if (ftz && at === "f32") x = flushSubnormal(x);
          write(b, floatToInt(x, mode, dt));
          return next;
        };
      return (b) => {
        write(b, sat ? clampInt(read(b), dt) : wrapInt(read(b), dt));
        return next;
      };
    },
  };
}

/** cvta: generic <-> state-space addresses. Global addresses are already generic; shared ones are offset. */
function cvta(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const to = m.flag("to");
  const space = m.take("global", "shared", "shared::cta");
  if (!space) ctx.fail("cvta is implemented for .global and .shared");
  const type = m.type(["u64"]);
  m.done();
  const [d, a] = ctx.operands(2);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const delta = space === "global" ? 0 : ((to ? -1 : 1) * SHARED_WINDOW) / TWO32;
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      return (b) => {
        i32[b + sd] = i32[b + sa]!;
        i32[b + sd + 1] = (i32[b + sa + 1]! + delta) | 0;
        return next;
      };
    },
  };
}

export function decodeMove(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  if (m.base === "mov") return mov(ctx, ins, m);
  if (m.base === "cvt") return cvt(ctx, ins, m);
  return cvta(ctx, ins, m);
}
