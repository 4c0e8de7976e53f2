// Finite-difference gradient checks on the CPU executor (the numerical oracle).
//
// The checked function is L(x) = sum(op(x) * W) for fixed random weights W, so every output element
// matters with a different weight. The analytic side is grad()'s graph run by the executor; the
// numeric side is a central difference (L(x + h e_j) - L(x - h e_j)) / h_actual per element, where
// L is summed in f64 on the host from the op's f32 output.
//
// Why eps = 1e-3 and a tolerance of 2e-3 relative (+ 1e-3 x the tensor's largest gradient):
// - the executor computes each op in f64 but stores f32, so each output element carries a relative
//   rounding error of at most 2^-24 = 6e-8; only the outputs that depend on x_j differ between the
//   two evaluations (the rest round identically and cancel), so the difference quotient has an error
//   of about sqrt(k) * 2 * 6e-8 * |out| * |W| / (2 * 1e-3) = sqrt(k) * 6e-5 for k dependent outputs
//   of magnitude ~1 (k <= ~50 here: <= 5e-4);
// - x +- h is rounded to f32, so we divide by the step actually taken (h_actual = fl(x+h) - fl(x-h)),
//   which removes that error entirely;
// - the truncation error of a central difference is h^2/6 * f''' ~ 2e-7 for the smooth ops here.
// A wrong rule is off by O(1) (a missing factor, a transposed operand, a dropped broadcast sum), so a
// tolerance of a few 1e-3 cannot hide it; test "catches a wrong rule" proves the checker can fail.
// Non-smooth ops are checked at points at least 0.1 away from their kinks and ties (>> h).

import { expect } from "vitest";
import { grad, gradName } from "../../compiler/autodiff/index.ts";
import { type DType, Graph, numel, type Shape } from "../../compiler/ir/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";

/** A small deterministic PRNG (mulberry32), so every run checks the same points. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Values = "normal" | "positive" | "awayFromZero" | "distinct" | number[];

/** Values for an operand: standard normal, |x| in [0.2, 2] (positive or random sign), or distinct. */
export function values(shape: Shape, kind: Values, seed: number): Float32Array {
  const n = numel(shape);
  if (Array.isArray(kind)) return Float32Array.from(kind);
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (kind === "normal") out[i] = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
    else if (kind === "distinct") out[i] = (i - n / 2) * 0.15;
    else {
      const mag = 0.2 + 1.8 * r();
      out[i] = kind === "positive" || r() < 0.5 ? mag : -mag;
    }
  }
  if (kind === "distinct") {
    // shuffle so maxima land anywhere; values stay >= 0.15 apart
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
  }
  return out;
}

export interface Operand {
  shape: Shape;
  values?: Values;
  /** Differentiated (a param node) unless false (then a constant). */
  diff?: boolean;
  dtype?: DType;
  /** Raw data for constants (e.g. i32 indices). */
  data?: Float32Array | Int32Array;
}

export interface CheckOptions {
  seed?: number;
  eps?: number;
  rtol?: number;
  /** Executor bf16 rounding (off to check cast structure with smooth arithmetic). */
  roundBf16?: boolean;
}

export interface CheckResult {
  maxAbsErr: number;
  maxGrad: number;
}

/**
 * Builds `op(operands)` with `build`, then compares grad()'s gradient of sum(out * W) with central
 * differences for every element of every differentiated operand. Returns the worst error.
 */
export function checkGrad(
  operands: Operand[],
  build: (g: Graph, ids: number[]) => number,
  options: CheckOptions = {},
): CheckResult {
  const seed = options.seed ?? 1;
  const eps = options.eps ?? 1e-3;
  const rtol = options.rtol ?? 2e-3;
  const execOpts = { roundBf16: options.roundBf16 ?? true };
  const g = new Graph();
  const params = new Map<string, HostTensor>();
  const ids = operands.map((o, i) => {
    const dtype = o.dtype ?? "f32";
    if (o.diff === false) {
      const data = o.data ?? values(o.shape, o.values ?? "normal", seed * 100 + i);
      return g.add("const", [], { shape: [...o.shape], dtype, data }).id;
    }
    params.set(`p${i}`, hostTensor(o.shape, dtype, values(o.shape, o.values ?? "normal", seed * 100 + i)));
    return g.add("param", [], { name: `p${i}`, shape: [...o.shape], dtype, init: "zeros", initArgs: [] }).id;
  });
  const out = g.node(build(g, ids));
  const w = values(out.shape, "normal", seed * 100 + 99);
  const wId = g.add("const", [], { shape: [...out.shape], dtype: out.dtype, data: w }).id;
  const loss = g.add("sum", [g.add("mul", [out.id, wId]).id], { axes: out.shape.map((_, i) => i), keepdims: false });
  g.setOutput("out", out.id);
  g.setOutput("loss", loss.id);

  const analytic = execute(grad(g, { loss: "loss" }), { inputs: {}, params }, execOpts).outputs;
  const lossAt = (p: Map<string, HostTensor>): number => {
    const o = execute(g, { inputs: {}, params: p }, execOpts).outputs.get("out") as HostTensor;
    let s = 0;
    for (let i = 0; i < o.data.length; i++) s += o.data[i] * w[i];
    return s;
  };

  let maxAbsErr = 0;
  let maxGrad = 0;
  for (const [name, p] of params) {
    const ana = analytic.get(gradName(name)) as HostTensor;
    expect(ana.shape).toEqual(p.shape);
    expect(ana.dtype).toBe(p.dtype);
    const scale = Math.max(...Array.from(ana.data, Math.abs), 1e-3);
    maxGrad = Math.max(maxGrad, scale);
    for (let j = 0; j < p.data.length; j++) {
      const x = p.data[j];
      const data = Float32Array.from(p.data);
      data[j] = x + eps;
      const hi = data[j];
      const lp = lossAt(new Map(params).set(name, { ...p, data: Float32Array.from(data) }));
      data[j] = x - eps;
      const lo = data[j];
      const lm = lossAt(new Map(params).set(name, { ...p, data }));
      const numeric = (lp - lm) / (hi - lo);
      const err = Math.abs(numeric - ana.data[j]);
      maxAbsErr = Math.max(maxAbsErr, err);
      if (err > rtol * Math.abs(ana.data[j]) + 1e-3 * scale) {
        throw new Error(
          `${name}[${j}] (shape [${p.shape}]): analytic ${ana.data[j]} vs numeric ${numeric} (err ${err.toExponential(2)})`,
        );
      }
    }
  }
  return { maxAbsErr, maxGrad };
}

/** Shorthand: a param-operand list from shapes. */
export const ops = (...shapes: Shape[]): Operand[] => shapes.map((shape) => ({ shape }));

/** The const-node attrs of a scalar. */
export function scalarConst(g: Graph, v: number, dtype: DType = "f32"): number {
  return g.add("const", [], { shape: [], dtype, data: dtype === "i32" ? Int32Array.of(v) : Float32Array.of(v) }).id;
}
