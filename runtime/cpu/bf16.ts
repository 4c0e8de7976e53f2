// bfloat16 rounding: round-to-nearest-even on the upper 16 bits of an f32, as the hardware's
// cvt.rn.bf16.f32 does. NaN stays NaN.

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

export function toBf16(x: number): number {
  f[0] = x;
  const bits = u[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return x;
  u[0] = ((bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000) >>> 0;
  return f[0];
}

export function roundBf16InPlace(a: Float32Array): void {
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) continue;
    bits[i] = ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
}

/** f32 values -> raw bf16 bits (after rounding), for safetensors. */
export function f32ToBf16Bits(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) {
    f[0] = toBf16(a[i]);
    out[i] = u[0] >>> 16;
  }
  return out;
}

export function bf16BitsToF32(b: Uint16Array): Float32Array {
  const out = new Float32Array(b.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < b.length; i++) bits[i] = b[i] << 16;
  return out;
}
