// bfloat16 rounding: round-to-nearest-even on the upper 16 bits of an f32, as the hardware's
// cvt.rn.bf16.f32 does. A NaN stays a NaN: it keeps its sign and upper payload and gains the quiet
// bit, so a NaN whose payload lives only in the low half does not truncate to infinity.

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

/** The bf16 bits (upper half of the f32 pattern) of f32 bits `b`, rounded to nearest even. */
function roundBits(b: number): number {
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** x (rounded to f32 first) rounded to the nearest bf16 value, returned as a number. */
export function toBf16(x: number): number {
  f[0] = x;
  u[0] = roundBits(u[0]) << 16;
  return f[0];
}

export function roundBf16InPlace(a: Float32Array): void {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < bits.length; i++) bits[i] = roundBits(bits[i]) << 16;
}

/** f32 values -> raw bf16 bits (after rounding), for safetensors. Works on the bit patterns, so NaN payloads survive. */
export function f32ToBf16Bits(a: Float32Array): Uint16Array {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = roundBits(bits[i]);
  return out;
}

export function bf16BitsToF32(b: Uint16Array): Float32Array {
  const out = new Float32Array(b.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < b.length; i++) bits[i] = b[i] << 16;
  return out;
}
