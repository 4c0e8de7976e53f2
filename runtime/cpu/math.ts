// Scalar functions JavaScript lacks, accurate to double precision (they are part of the oracle).

// 1/n for the series' divisions (a multiply is several times cheaper than a divide).
const SERIES_TERMS = 200;
const RECIPROCAL = Float64Array.from({ length: 2 * SERIES_TERMS + 2 }, (_, n) => 1 / n);

/** erf(x): Maclaurin series below 2.5, continued fraction for erfc above (|error| < 1e-13). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax === 0) return x; // keeps the sign of -0
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    const x2 = ax * ax;
    for (let n = 1; n < SERIES_TERMS; n++) {
      term *= -x2 * RECIPROCAL[n];
      const t = term * RECIPROCAL[2 * n + 1];
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  if (ax > 6) return x < 0 ? -1 : 1;
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) via modified Lentz.
  const tiny = 1e-300;
  let fr = ax;
  let c = ax;
  let d = 0;
  for (let k = 1; k < 300; k++) {
    const a = k / 2;
    d = ax + a * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = ax + a / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    fr *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / fr;
  return x < 0 ? erfc - 1 : 1 - erfc;
}

export function gelu(x: number, approximate: string): number {
  if (approximate === "tanh") {
    const k = Math.sqrt(2 / Math.PI);
    return 0.5 * x * (1 + Math.tanh(k * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}
