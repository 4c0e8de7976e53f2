// Sampling bounds for statistical tests. The generators under test are deterministic, so each test
// either always passes or always fails; the bounds are set so that a correct generator would fail
// with probability below ~1e-8 (z = 6 standard errors; DKW with alpha = 1e-9).

export const Z = 6;

/** Bound on |k - n q| for a Binomial(n, q) count. */
export function binomialBound(n: number, q: number): number {
  return Z * Math.sqrt(n * q * (1 - q));
}

/** Moments of a density on [lo, hi] by composite Simpson quadrature (normalised numerically). */
export function moments(pdf: (x: number) => number, lo: number, hi: number, steps = 20000) {
  const h = (hi - lo) / steps;
  const integrate = (g: (x: number) => number) => {
    let s = g(lo) + g(hi);
    for (let i = 1; i < steps; i++) s += (i % 2 === 1 ? 4 : 2) * g(lo + i * h);
    return (s * h) / 3;
  };
  const mass = integrate(pdf);
  const mean = integrate((x) => x * pdf(x)) / mass;
  const variance = integrate((x) => (x - mean) ** 2 * pdf(x)) / mass;
  const m4 = integrate((x) => (x - mean) ** 4 * pdf(x)) / mass;
  return { mean, variance, m4 };
}

export function sampleMoments(v: ArrayLike<number>) {
  let mean = 0;
  for (let i = 0; i < v.length; i++) mean += v[i];
  mean /= v.length;
  let variance = 0;
  for (let i = 0; i < v.length; i++) variance += (v[i] - mean) ** 2;
  variance /= v.length - 1;
  return { mean, variance };
}

/** Standard errors of the sample mean and variance of n draws with the given true moments. */
export function momentBounds(n: number, m: { variance: number; m4: number }) {
  return { mean: Z * Math.sqrt(m.variance / n), variance: Z * Math.sqrt((m.m4 - m.variance ** 2) / n) };
}

/** Kolmogorov-Smirnov distance between a sample and a CDF. */
export function ksDistance(v: ArrayLike<number>, cdf: (x: number) => number): number {
  const s = Float64Array.from(v).sort();
  const n = s.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = cdf(s[i]);
    d = Math.max(d, Math.abs(f - i / n), Math.abs((i + 1) / n - f));
  }
  return d;
}

/** Dvoretzky-Kiefer-Wolfowitz: P(D_n > eps) <= 2 exp(-2 n eps^2), so this eps has P <= alpha. */
export function dkwBound(n: number, alpha = 1e-9): number {
  return Math.sqrt(Math.log(2 / alpha) / (2 * n));
}
