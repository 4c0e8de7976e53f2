// Transcendentals as Exprs over the hardware primitives (ex2.approx, IEEE div/sqrt, fma, integer ops).
// The renderer expands each composite op with these before emitting it. Accuracy targets: relative
// error within a few 1e-7 across the range, including the tails where naive forms cancel:
//   exp      2^(x log2 e) with the rounding error of x log2 e folded back in (Cody-Waite style)
//   log      exponent + 2 atanh((m-1)/(m+1)), m in [sqrt(1/2), sqrt(2)) (series, |s| < 0.172)
//   tanh     odd Taylor series below 0.25, 1 - 2/(exp(2|x|) + 1) above
//   erf      Maclaurin series below 0.5, 1 - erfc above; erfc(z) = t exp(-z^2 + P(t)), t = 1/(1+z/2),
//            the Chebyshev fit of Numerical Recipes (fractional error < 1.2e-7 for all z >= 0), with
//            z^2 carried exactly (hi + lo)
//   gelu     x/2 erfc(-x/sqrt 2) on the negative side (no 1 + erf cancellation)
//   geluTanh x sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3), the same function as x/2 (1 + tanh u)
//   sigmoid  1 / (1 + exp(-x))

import { abs, bitcast, cast, type Expr, exp2, f32, fma, i32, rcp, select } from "../tile/expr.ts";

const LOG2E_HI = Math.fround(Math.LOG2E);
const LOG2E_LO = Math.fround(Math.LOG2E - LOG2E_HI);
const LN2 = Math.LN2;

/** Horner evaluation of c[0] + y (c[1] + y (c[2] + ...)). */
function horner(y: Expr<"f32">, c: readonly number[]): Expr<"f32"> {
  let acc: Expr<"f32"> = f32(c[c.length - 1]);
  for (let i = c.length - 2; i >= 0; i--) acc = fma(acc, y, c[i]);
  return acc;
}

export function expOf(x: Expr<"f32">): Expr<"f32"> {
  const t = x.mul(LOG2E_HI);
  // err = the exact x log2 e - t: the product's rounding (fma) plus the constant's own tail.
  const err = fma(x, LOG2E_HI, t.neg()).add(x.mul(LOG2E_LO));
  const r = exp2(t);
  // 2^(t + err) = 2^t (1 + err ln 2); skipped where 2^t is 0 or inf (err would be inf - inf).
  return select(abs(t).lt(120), fma(r, err.mul(LN2), r), r);
}

export function logOf(x: Expr<"f32">): Expr<"f32"> {
  // Subnormals are scaled into the normal range first.
  const tiny = x.lt(2 ** -126);
  const xs = select(tiny, x.mul(2 ** 24), x);
  const bits = bitcast(xs, "i32");
  const e0 = bits.shr(23).and(0xff).sub(127);
  const m0 = bitcast(bits.and(0x7fffff).or(0x3f800000), "f32"); // [1, 2)
  const big = m0.gt(Math.SQRT2);
  const m = select(big, m0.mul(0.5), m0);
  const e = cast(e0.add(select(big, i32(1), i32(0))).sub(select(tiny, i32(24), i32(0))), "f32");
  const s = m.sub(1).div(m.add(1));
  const s2 = s.mul(s);
  // log m = 2 (s + s^3/3 + s^5/5 + ...)
  const series = s.mul(horner(s2, [2, 2 / 3, 2 / 5, 2 / 7, 2 / 9, 2 / 11]));
  const r = fma(e, LN2, series);
  const inf = f32(Number.POSITIVE_INFINITY);
  // x = 0 -> -inf, x = inf -> inf, x < 0 or NaN -> NaN.
  const special = select(x.eq(0), f32(Number.NEGATIVE_INFINITY), select(x.eq(inf), inf, f32(Number.NaN)));
  return select(x.gt(0).and(x.lt(inf)), r, special);
}

export function tanhOf(x: Expr<"f32">): Expr<"f32"> {
  const a = abs(x);
  const x2 = x.mul(x);
  const series = x.mul(horner(x2, [1, -1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075]));
  const big = f32(1).sub(f32(2).div(expOf(a.mul(2)).add(1)));
  return select(a.lt(0.25), series, select(x.lt(0), big.neg(), big));
}

/**
 * erfc(z) for z >= 0 with small relative error (see the header). z^2 is passed as an unevaluated sum
 * hi + lo (exact), because erfc's relative sensitivity to z is 2 z^2: rounding z or z^2 alone would
 * cost ~1e-6 relative at z^2 ~ 10.
 */
function erfcPos(z: Expr<"f32">, z2hi: Expr<"f32">, z2lo: Expr<"f32">): Expr<"f32"> {
  const t = rcp(fma(z, 0.5, 1));
  const p = horner(
    t,
    [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277],
  );
  return t.mul(expOf(z2hi.neg())).mul(expOf(p.sub(z2lo)));
}

/** x^2 as hi + lo with hi = fl(x * x) and lo its exact rounding error (fma). */
function exactSquare(x: Expr<"f32">): [Expr<"f32">, Expr<"f32">] {
  const hi = x.mul(x);
  return [hi, fma(x, x, hi.neg())];
}

function erfSeries(x: Expr<"f32">): Expr<"f32"> {
  // 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)), n <= 6: error < 1e-9 relative for |x| < 0.5.
  const c = [0, 1, 2, 3, 4, 5, 6].map((n) => ((-1) ** n * (2 / Math.sqrt(Math.PI))) / (factorial(n) * (2 * n + 1)));
  return x.mul(horner(x.mul(x), c));
}

function factorial(n: number): number {
  return n <= 1 ? 1 : n * factorial(n - 1);
}

export function erfOf(x: Expr<"f32">): Expr<"f32"> {
  const a = abs(x);
  const [hi, lo] = exactSquare(x);
  const big = f32(1).sub(erfcPos(a, hi, lo));
  return select(a.lt(0.5), erfSeries(x), select(x.lt(0), big.neg(), big));
}

export function geluOf(x: Expr<"f32">): Expr<"f32"> {
  const z = x.mul(Math.SQRT1_2);
  const a = abs(z);
  // z^2 = x^2 / 2 exactly (halving is exact), not the square of the rounded z.
  const [hi, lo] = exactSquare(x);
  const ec = erfcPos(a, hi.mul(0.5), lo.mul(0.5));
  // 1 + erf(z): the series near 0, erfc(-z) = erfc(|z|) for z < 0, 2 - erfc(z) for z > 0.
  const onePlusErf = select(a.lt(0.5), erfSeries(z).add(1), select(z.lt(0), ec, f32(2).sub(ec)));
  return x.mul(0.5).mul(onePlusErf);
}

export function sigmoidOf(x: Expr<"f32">): Expr<"f32"> {
  return rcp(expOf(x.neg()).add(1));
}

export function geluTanhOf(x: Expr<"f32">): Expr<"f32"> {
  const u = x.mul(fma(x.mul(x), 0.044715, 1)).mul(Math.sqrt(2 / Math.PI));
  return x.mul(sigmoidOf(u.mul(2)));
}

/** The expansion of a composite op, or undefined for primitives. */
export function expandMath(e: Expr): Expr | undefined {
  const x = e.args[0] as Expr<"f32">;
  switch (e.op) {
    case "exp":
      return expOf(x);
    case "log":
      return logOf(x);
    case "log2":
      return logOf(x).mul(Math.LOG2E);
    case "tanh":
      return tanhOf(x);
    case "erf":
      return erfOf(x);
    case "sigmoid":
      return sigmoidOf(x);
    case "gelu":
      return geluOf(x);
    case "geluTanh":
      return geluTanhOf(x);
    default:
      return undefined;
  }
}
