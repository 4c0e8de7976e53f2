// Host-side value helpers of the lowering: constants folded into kernel arguments get the rounding
// the graph gives them (a bf16 constant is a bf16 value), so kernels compute what the graph means.

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

/** x rounded to the nearest bf16 (ties to even; NaN stays NaN), as the f32 value it represents. */
export function bf16Value(x: number): number {
  f[0] = x;
  const b = u[0];
  const bits =
    (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0
      ? ((b >>> 16) | 0x40) & 0xffff
      : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  u[0] = bits << 16;
  return f[0];
}
