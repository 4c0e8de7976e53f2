// SimMIM's random masking, as a plain function the data pipeline can call: for each image, a
// fraction `ratio` of the maskPatch x maskPatch squares (ceil(count * ratio) of them, as SimMIM's
// MaskGenerator) is masked. Deterministic in (seed, sample index): the permutation comes from a
// small counter-based generator defined here, so a mask does not depend on batch composition.

export interface MaskOptions {
  /** Image height and width in pixels (multiples of maskPatch). */
  readonly height: number;
  readonly width: number;
  /** Mask patch side in pixels (default 32). */
  readonly maskPatch?: number;
  /** Fraction of mask patches to mask (default 0.6). */
  readonly ratio?: number;
}

/** 32-bit integer hash (the murmur3 finaliser): a pure function of its input. */
function hash32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The grid of mask patches of an image: [rows, cols]. */
export function maskGrid(o: MaskOptions): [number, number] {
  const p = o.maskPatch ?? 32;
  if (o.height % p !== 0 || o.width % p !== 0) {
    throw new Error(`SimMIM masking needs image sides that are multiples of ${p}, got ${o.height}x${o.width}`);
  }
  return [o.height / p, o.width / p];
}

/**
 * The mask of one image as [rows * cols] values in row-major order, 1 = masked, 0 = visible.
 * `sample` is the image's index in the data stream (so each image of a batch gets its own mask).
 */
export function simmimMask(o: MaskOptions, seed: number, sample = 0): Float32Array {
  const [rows, cols] = maskGrid(o);
  const count = rows * cols;
  const masked = Math.ceil(count * (o.ratio ?? 0.6));
  const key = hash32((seed >>> 0) ^ hash32(Math.imul(sample + 1, 0x9e3779b9) >>> 0));
  // Fisher-Yates with one draw per step, counter-based: draw i depends only on (key, i).
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor((hash32((key ^ Math.imul(i, 0x27d4eb2f)) >>> 0) / 4294967296) * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const mask = new Float32Array(count);
  for (let i = 0; i < masked; i++) mask[order[i]] = 1;
  return mask;
}

/** Masks for a batch, [batch, rows, cols] row-major: samples first, first .. first + batch - 1. */
export function simmimMaskBatch(o: MaskOptions, seed: number, batch: number, first = 0): Float32Array {
  const [rows, cols] = maskGrid(o);
  const out = new Float32Array(batch * rows * cols);
  for (let b = 0; b < batch; b++) out.set(simmimMask(o, seed, first + b), b * rows * cols);
  return out;
}
