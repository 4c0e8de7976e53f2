// Counter-based random numbers: value i of stream s under seed k is a pure function of (k, s, i),
// so masks and initial weights do not depend on evaluation order, and a GPU kernel can compute
// the same bits. The mixer is a 32-bit integer hash (xor-shift-multiply).

export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The key of one stream under one seed. */
export function streamKey(seed: number, stream: number): number {
  return mix32((seed >>> 0) ^ mix32(Math.imul(stream + 1, 0x9e3779b9) >>> 0));
}

/** 32 random bits for element i of a keyed stream. */
export function randomBits(key: number, i: number): number {
  return mix32((key ^ Math.imul(i, 0x85ebca6b)) >>> 0);
}

/** Uniform in (0, 1). */
export function uniform(key: number, i: number): number {
  return (randomBits(key, i) + 0.5) / 4294967296;
}

/** Keep threshold for dropout probability p: keep when bits >= threshold. */
export function dropThreshold(p: number): number {
  return Math.min(Math.floor(p * 4294967296), 4294967295);
}

/** FNV-1a hash of a string (parameter names seed their own streams). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
