// Bit-exact number formats and roundings the PTX ISA specifies: bf16/f16 <-> f32, directed rounding to f32,
// round-half-even to integer, a correctly rounded f32 fma, and exact 32x32->64 products.

const scratch = new ArrayBuffer(8);
const scratchF32 = new Float32Array(scratch, 0, 1);
const scratchU32 = new Uint32Array(scratch, 0, 1);
const scratchF64 = new Float64Array(scratch);
const scratchU32x2 = new Uint32Array(scratch);

export const TWO32 = 4294967296;
/** Smallest positive normal f32: inputs below it are flushed by `.ftz`. */
export const F32_MIN_NORMAL = 1.1754943508222875e-38;
/** The canonical NaN the hardware writes for a bf16 result of a NaN input. */
export const BF16_CANONICAL_NAN = 0x7fff;
export const F16_CANONICAL_NAN = 0x7fff;

export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

export function f64Bits(x: number): bigint {
  scratchF64[0] = x;
  return (BigInt(scratchU32x2[1]!) << 32n) | BigInt(scratchU32x2[0]!);
}

export function f64FromBits(bits: bigint): number {
  scratchU32x2[0] = Number(bits & 0xffffffffn);
  scratchU32x2[1] = Number((bits >> 32n) & 0xffffffffn);
  return scratchF64[0]!;
}

/** `.ftz`: a subnormal becomes a zero of the same sign. */
export function flushSubnormal(x: number): number {
  return x < F32_MIN_NORMAL && x > -F32_MIN_NORMAL ? x * 0 : x;
}

/** bf16 bits -> f32 bits: bf16 is the upper half of an f32. */
export function bf16ToF32Bits(h: number): number {
  return (h << 16) >>> 0;
}

export function bf16ToF32(h: number): number {
  return f32FromBits(h << 16);
}

/** f32 bits -> bf16 bits, round to nearest even (`cvt.rn.bf16.f32`). NaN -> canonical NaN. */
export function f32BitsToBf16Rn(u: number): number {
  u >>>= 0;
  if ((u & 0x7fffffff) > 0x7f800000) return BF16_CANONICAL_NAN;
  const lsb = (u >>> 16) & 1;
  return ((u + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** f32 bits -> bf16 bits, round toward zero (`cvt.rz.bf16.f32`). */
export function f32BitsToBf16Rz(u: number): number {
  u >>>= 0;
  if ((u & 0x7fffffff) > 0x7f800000) return BF16_CANONICAL_NAN;
  return u >>> 16;
}

/** Host-side helper: round a number to bf16 (RNE) and return the bf16 bits. */
export function f32ToBf16(x: number): number {
  return f32BitsToBf16Rn(f32Bits(x));
}

/** Host-side helper: the value of x after rounding to bf16 and back. */
export function roundToBf16(x: number): number {
  return bf16ToF32(f32ToBf16(x));
}

/** f16 bits -> f32 value (exact). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** A small IEEE binary format: f16 (5-bit exponent, 10-bit mantissa) or bf16 (8, 7). */
export interface SmallFloatFormat {
  manBits: number;
  expBits: number;
}
export const F16_FORMAT: SmallFloatFormat = { manBits: 10, expBits: 5 };
export const BF16_FORMAT: SmallFloatFormat = { manBits: 7, expBits: 8 };

/** A double -> f16/bf16 bits with the given rounding, rounded once from the exact double. NaN -> canonical. */
export function toSmallFloat(x: number, mode: RoundMode, fmt: SmallFloatFormat): number {
  const { manBits, expBits } = fmt;
  const signBit = 1 << (manBits + expBits);
  const infBits = ((1 << expBits) - 1) << manBits;
  if (Number.isNaN(x)) return infBits | (1 << (manBits - 1)) | ((1 << (manBits - 1)) - 1); // 0x7fff for both
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  if (a === Number.POSITIVE_INFINITY) return sign | infBits;
  const bias = (1 << (expBits - 1)) - 1;
  const minExp = 1 - bias;
  // Exponent of a, then the grid spacing there (subnormal spacing below the smallest normal).
  let e = a === 0 ? minExp - 1 : Math.floor(Math.log2(a));
  if (a !== 0 && 2 ** e > a) e -= 1;
  if (a !== 0 && 2 ** (e + 1) <= a) e += 1;
  const subnormal = e < minExp;
  const step = 2 ** ((subnormal ? minExp : e) - manBits);
  const q = a / step; // exact: a power-of-two division
  let n = roundIntegral(q, magnitudeMode(mode, sign !== 0));
  let bits: number;
  if (subnormal) {
    bits = n; // n may reach 2^manBits: that is the smallest normal, and the encoding carries over
  } else {
    if (n >= 2 << manBits) {
      n /= 2;
      e += 1;
    }
    bits = ((e + bias) << manBits) | (n - (1 << manBits));
  }
  if (bits >= infBits) {
    // Overflow: nearest and away-from-zero directions give infinity, the others the largest finite value.
    const toInf = mode === "rn" || (mode === "rp" && sign === 0) || (mode === "rm" && sign !== 0);
    bits = toInf ? infBits : infBits - 1;
  }
  return sign | bits;
}

/** f32/f64 value -> f16 bits. */
export function toF16(x: number, mode: RoundMode = "rn"): number {
  return toSmallFloat(x, mode, F16_FORMAT);
}

export type RoundMode = "rn" | "rz" | "rm" | "rp";

/** Rounding of a magnitude: rm/rp flip meaning for negative numbers. */
function magnitudeMode(mode: RoundMode, negative: boolean): "rn" | "down" | "up" {
  if (mode === "rn") return "rn";
  if (mode === "rz") return "down";
  if (mode === "rp") return negative ? "down" : "up";
  return negative ? "up" : "down";
}

function roundIntegral(q: number, m: "rn" | "down" | "up"): number {
  if (m === "down") return Math.floor(q);
  if (m === "up") return Math.ceil(q);
  return roundHalfEven(q);
}

/** Round to the nearest integer, ties to even (`.rni`). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Round a float to an integral value with a PTX integer rounding modifier (.rni .rzi .rmi .rpi). */
export function roundToIntegral(x: number, mode: RoundMode): number {
  if (!Number.isFinite(x)) return x;
  let r: number;
  if (mode === "rn") r = roundHalfEven(x);
  else if (mode === "rz") r = Math.trunc(x);
  else if (mode === "rm") r = Math.floor(x);
  else r = Math.ceil(x);
  return r === 0 ? x * 0 : r; // keep the sign of zero
}

/** The next f32 after the f32 value r, toward +inf (up) or -inf (down). */
function nextF32(r: number, up: boolean): number {
  if (r === 0) return up ? 1.401298464324817e-45 : -1.401298464324817e-45;
  const bits = f32Bits(r);
  const awayFromZero = up === r > 0;
  return f32FromBits(awayFromZero ? bits + 1 : bits - 1);
}

/**
 * Round the exact value s + err (s a double, err the rounding error of s, 0 if s is exact) to f32 with the
 * given mode. Used where the exact result of an f32 operation is not a double (fma, add with distant exponents).
 */
export function roundToF32(s: number, err: number, mode: RoundMode): number {
  if (Number.isNaN(s)) return s;
  const r = Math.fround(s);
  if (mode === "rn") {
    if (err === 0 || r === s || !Number.isFinite(r)) return r;
    // s lies strictly between two f32s; only an exact midpoint needs err to break the tie.
    const other = nextF32(r, s > r);
    const mid = (r + other) / 2;
    if (s !== mid) return r;
    return err > 0 === other > r ? other : r;
  }
  // Directed modes: compare the exact value (s + err) with r.
  const exactAbove = s > r || (s === r && err > 0);
  const exactBelow = s < r || (s === r && err < 0);
  if (!exactAbove && !exactBelow) return r;
  if (mode === "rp") return exactAbove ? nextF32(r, true) : r;
  if (mode === "rm") return exactBelow ? nextF32(r, false) : r;
  // rz: move toward zero when r is farther from zero than the exact value
  if (r > 0 && exactBelow) return nextF32(r, false);
  if (r < 0 && exactAbove) return nextF32(r, true);
  if (r === Number.POSITIVE_INFINITY || r === Number.NEGATIVE_INFINITY) return nextF32(r, r < 0);
  return r;
}

/** Knuth's TwoSum: the rounding error of a + b (exact when no overflow). */
export function twoSumError(a: number, b: number, s: number): number {
  const bb = s - a;
  return a - (s - bb) + (b - bb);
}

/** Correctly rounded f32 fma: the product of two f32 is exact in double; the sum is fixed up by TwoSum. */
export function fmaF32(a: number, b: number, c: number, mode: RoundMode = "rn"): number {
  const p = a * b;
  const s = p + c;
  if (!Number.isFinite(s)) return Math.fround(s);
  return roundToF32(s, twoSumError(p, c, s), mode);
}

/** Exact signed 32x32 -> 64 product as [lo, hi] int32 words. */
export function mulWideS32(a: number, b: number, out: Int32Array, at: number): void {
  const p = a * b;
  if (p <= 9007199254740992 && p >= -9007199254740992) {
    out[at] = p | 0;
    out[at + 1] = Math.floor(p / TWO32);
    return;
  }
  const big = BigInt(a) * BigInt(b);
  out[at] = Number(BigInt.asIntN(32, big));
  out[at + 1] = Number(BigInt.asIntN(32, big >> 32n));
}

/** Exact unsigned 32x32 -> 64 product (a, b given as uint32 values). */
export function mulWideU32(a: number, b: number, out: Int32Array, at: number): void {
  const p = a * b;
  if (p <= 9007199254740992) {
    out[at] = p | 0;
    out[at + 1] = Math.floor(p / TWO32);
    return;
  }
  const big = BigInt(a) * BigInt(b);
  out[at] = Number(BigInt.asIntN(32, big));
  out[at + 1] = Number(BigInt.asIntN(32, big >> 32n));
}

/** The high 32 bits of a 32x32 product (mul.hi), signed or unsigned. */
export function mulHi32(a: number, b: number, signed: boolean): number {
  const p = a * b;
  if (p <= 9007199254740992 && p >= -9007199254740992) return Math.floor(p / TWO32) | 0;
  const big = signed ? BigInt(a) * BigInt(b) : BigInt(a >>> 0) * BigInt(b >>> 0);
  return Number(BigInt.asIntN(32, big >> 32n));
}
