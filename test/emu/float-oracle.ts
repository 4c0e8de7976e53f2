// An exact reference for IEEE rounding, independent of the emulator's numeric code: values are dyadic
// rationals m * 2^e (BigInt m), and rounding to a binary format is done on the exact integer.

export type Mode = "rn" | "rz" | "rm" | "rp";

export interface Format {
  /** Stored mantissa bits. */
  man: number;
  minExp: number;
  maxExp: number;
}
export const F32: Format = { man: 23, minExp: -126, maxExp: 127 };
export const BF16: Format = { man: 7, minExp: -126, maxExp: 127 };
export const F16: Format = { man: 10, minExp: -14, maxExp: 15 };

const view = new DataView(new ArrayBuffer(8));

export function f32(bits: number): number {
  view.setUint32(0, bits >>> 0);
  return view.getFloat32(0);
}

export function bitsOf(x: number): number {
  view.setFloat32(0, x);
  return view.getUint32(0);
}

/** A finite double as [m, e] with x = m * 2^e. */
export function decompose(x: number): [bigint, number] {
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const exp = (hi >>> 20) & 0x7ff;
  let m = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (exp !== 0) m |= 1n << 52n;
  const sign = hi >>> 31 ? -1n : 1n;
  return [sign * m, exp === 0 ? -1074 : exp - 1075];
}

/** Round m * 2^e to the format; returns the rounded value as a double (exact), with infinities on overflow. */
export function roundExact(m: bigint, e: number, mode: Mode, fmt: Format = F32): number {
  if (m === 0n) return 0;
  const neg = m < 0n;
  const am = neg ? -m : m;
  const top = am.toString(2).length - 1 + e; // exponent of the leading bit
  const q = Math.max(top, fmt.minExp) - fmt.man; // exponent of the last kept bit
  const s = q - e;
  let n: bigint;
  if (s <= 0) n = am << BigInt(-s);
  else {
    n = am >> BigInt(s);
    const rem = am - (n << BigInt(s));
    const half = 1n << BigInt(s - 1);
    const up =
      mode === "rn"
        ? rem > half || (rem === half && (n & 1n) === 1n)
        : mode === "rz"
          ? false
          : mode === "rp"
            ? !neg && rem > 0n
            : neg && rem > 0n;
    if (up) n += 1n;
  }
  let v = Number(n) * 2 ** q;
  const max = (2 - 2 ** -fmt.man) * 2 ** fmt.maxExp;
  if (v > max) {
    const toInf = mode === "rn" || (mode === "rp" && !neg) || (mode === "rm" && neg);
    v = toInf ? Number.POSITIVE_INFINITY : max;
  }
  return neg ? -v : v;
}

/** Round an exact sum of dyadic terms. */
function sumTerms(terms: [bigint, number][], mode: Mode, fmt: Format): number {
  const e = Math.min(...terms.map((t) => t[1]));
  const m = terms.reduce((acc, [tm, te]) => acc + (tm << BigInt(te - e)), 0n);
  if (m === 0n) return mode === "rm" ? -0 : 0; // an exact zero sum of nonzero terms
  return roundExact(m, e, mode, fmt);
}

export function addRef(a: number, b: number, mode: Mode): number {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return Math.fround(a + b);
  if (a === 0 && b === 0) return Object.is(a, b) ? a : mode === "rm" ? -0 : 0;
  return sumTerms([decompose(a), decompose(b)], mode, F32);
}

export function mulRef(a: number, b: number, mode: Mode): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || a === 0 || b === 0) return Math.fround(a * b);
  const [ma, ea] = decompose(a);
  const [mb, eb] = decompose(b);
  return roundExact(ma * mb, ea + eb, mode, F32);
}

export function fmaRef(a: number, b: number, c: number, mode: Mode): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || !Number.isFinite(c)) return Math.fround(a * b + c);
  if (a === 0 || b === 0) return Math.fround(a * b + c);
  const [ma, ea] = decompose(a);
  const [mb, eb] = decompose(b);
  const terms: [bigint, number][] = [[ma * mb, ea + eb]];
  if (c !== 0) terms.push(decompose(c));
  return sumTerms(terms, mode, F32);
}

/** A double rounded to the format with `mode`; NaN stays NaN. */
export function roundTo(x: number, mode: Mode, fmt: Format): number {
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const [m, e] = decompose(x);
  return roundExact(m, e, mode, fmt);
}

/** bf16 bits of x rounded with mode (NaN -> the canonical 0x7fff). */
export function bf16Bits(x: number, mode: Mode): number {
  if (Number.isNaN(x)) return 0x7fff;
  return bitsOf(roundTo(x, mode, BF16)) >>> 16;
}

/** f16 bits of x rounded with mode (NaN -> 0x7fff). */
export function f16Bits(x: number, mode: Mode): number {
  if (Number.isNaN(x)) return 0x7fff;
  const v = roundTo(x, mode, F16);
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Number.POSITIVE_INFINITY) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | (a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  return sign | ((e + 15) << 10) | (a / 2 ** (e - 10) - 1024);
}
