// Shared by the lowering tests: small graphs built from IR ops, random feeds, and the check that a
// lowered plan run on the PTX emulator (run-plan.ts) agrees with runtime/cpu's execute of the same
// graph on every output.
//
// Tolerances, per output element (scale = the output's largest |value|):
//   f32   2e-6 * scale + 2e-6 * |want|: the kernels accumulate in f32 where the CPU accumulates in
//         f64; sums of up to a few hundred O(1) terms stay within ~1e-7 of the scale (measured worst:
//         0.04 of this bound).
//   bf16  2^-7 * |want| + 2^-8 * scale: one rounding of the result may land on the neighbouring bf16
//         value (2^-8..2^-7 relative), and a fused kernel rounds intermediates the unfused graph
//         stores once less (a GEMM epilogue: the product before the bias, GELU, residual), which
//         moves a result by up to half a bf16 step of the largest intermediate, of the order of the
//         output's scale here. Unfused kernels agree bit for bit (measured).
//   i32   exact.

import { expect } from "vitest";
import { type DType, Graph, type Node, numel } from "../../compiler/ir/index.ts";
import { type LoweredGraph, lowerGraph } from "../../compiler/lower/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { randomNormal } from "../../runtime/run/index.ts";
import { randomTensor } from "../kernels/harness.ts";
import { type PlanRun, runPlan } from "./run-plan.ts";

export type Tolerance = (want: number, scale: number) => number;

export const TOLERANCE: Record<DType, Tolerance> = {
  f32: (w, s) => 2e-6 * s + 2e-6 * Math.abs(w),
  bf16: (w, s) => 2 ** -7 * Math.abs(w) + 2 ** -8 * s,
  i32: () => 0,
};

export interface InputSpec {
  readonly shape: readonly number[];
  readonly dtype?: DType;
  /** Explicit values (i32 indices); default random in [-2, 2), bf16-representable. */
  readonly data?: readonly number[];
}

/** A graph whose inputs are `inputs` and whose outputs are what `body` returns. */
export function graphOf(
  inputs: Record<string, InputSpec>,
  body: (g: Graph, x: Record<string, Node>) => Record<string, Node>,
): Graph {
  const g = new Graph();
  const x: Record<string, Node> = {};
  for (const [name, s] of Object.entries(inputs))
    x[name] = g.add("input", [], { name, shape: [...s.shape], dtype: s.dtype ?? "f32" });
  for (const [name, n] of Object.entries(body(g, x))) g.setOutput(name, n.id);
  return g;
}

export function feedsOf(inputs: Record<string, InputSpec>, seed = 1): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  let s = seed;
  for (const [name, spec] of Object.entries(inputs)) {
    const dtype = spec.dtype ?? "f32";
    if (spec.data)
      out.set(name, hostTensor(spec.shape, dtype, dtype === "i32" ? Int32Array.from(spec.data) : Float32Array.from(spec.data)));
    else out.set(name, { ...randomTensor(spec.shape, s++, { scale: 2 }), dtype });
  }
  return out;
}

/** A scalar or splat constant. */
export function constant(g: Graph, value: number, dtype: DType = "f32", shape: readonly number[] = []): Node {
  return g.add("const", [], { shape: [...shape], dtype, data: dtype === "i32" ? Int32Array.of(value) : Float32Array.of(value) });
}

export interface Checked {
  lowered: LoweredGraph;
  run: PlanRun;
  /** Worst |got - want| / tolerance over all outputs (<= 1 passes). */
  worst: number;
  outputs: Map<string, { got: HostTensor; want: HostTensor }>;
}

/** Lowers `g`, runs it on the emulator and on the CPU, and expects every output within tolerance. */
export function checkLowering(
  g: Graph,
  feeds: Map<string, HostTensor>,
  o: { seed?: number; tolerance?: Partial<Record<DType, Tolerance>>; label?: string; params?: Map<string, HostTensor> } = {},
): Checked {
  const lowered = lowerGraph(g);
  const params = o.params ?? new Map();
  const run = runPlan(lowered.plan, { inputs: feeds, params }, { seed: o.seed });
  const want = execute(g, { inputs: feeds, params }, { seed: o.seed }).outputs;
  let worst = 0;
  const outputs = new Map<string, { got: HostTensor; want: HostTensor }>();
  for (const [name, w] of want) {
    const got = run.outputs.get(name) as HostTensor;
    expect(got, `${o.label ?? ""} output ${name}`).toBeDefined();
    expect(got.shape, `${o.label ?? ""} ${name} shape`).toEqual(w.shape);
    const tol = o.tolerance?.[w.dtype] ?? TOLERANCE[w.dtype];
    let scale = 0;
    for (let i = 0; i < w.data.length; i++) scale = Math.max(scale, Math.abs(w.data[i]));
    for (let i = 0; i < w.data.length; i++) {
      const d = Math.abs(got.data[i] - w.data[i]);
      const bound = tol(w.data[i], scale);
      const r = Number.isNaN(got.data[i]) !== Number.isNaN(w.data[i]) ? Number.POSITIVE_INFINITY : d === 0 ? 0 : d / bound;
      if (r > worst) worst = r;
      if (!(r <= 1)) {
        throw new Error(
          `${o.label ?? ""} ${name}[${i}] of ${numel(w.shape)}: emulator ${got.data[i]}, cpu ${w.data[i]} (scale ${scale}, bound ${bound})`,
        );
      }
    }
    outputs.set(name, { got, want: w });
  }
  if (process.env.PTC_AGREEMENT) console.log(`${o.label ?? ""}: worst ${worst.toFixed(4)} of the tolerance`);
  return { lowered, run, worst, outputs };
}

/** Weights with O(1) activations: N(0, 1/fan_in) matrices, N(0, 0.25) vectors. */
export function graphParams(g: Graph): Map<string, HostTensor> {
  return new Map(
    g.params().map((p) => {
      const name = String(p.attrs.name);
      const t = randomNormal(p.shape, 3, name);
      const fan = p.shape.length >= 2 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : 4;
      const d = t.data as Float32Array;
      for (let i = 0; i < d.length; i++) d[i] /= Math.sqrt(fan);
      return [name, t];
    }),
  );
}

/** N(0, 1) float inputs; i32 inputs (labels) in [0, 8). */
export function graphInputs(g: Graph): Map<string, HostTensor> {
  return new Map(
    g.inputs().map((n) => {
      const name = String(n.attrs.name);
      if (n.dtype !== "i32") return [name, randomNormal(n.shape, 4, name)];
      return [
        name,
        hostTensor(
          n.shape,
          "i32",
          Int32Array.from({ length: numel(n.shape) }, (_, i) => (i * 7) % 8),
        ),
      ];
    }),
  );
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/**
 * Whole bf16 graphs: dozens of roundings compound, and the CPU's bf16 graph is itself only one of the
 * possible roundings, so the plan is held to the CPU's own accuracy: against the f32 evaluation of
 * the same graph (roundBf16: false, the "true" value), the plan's largest error on each output must
 * be within 2x the CPU bf16 graph's largest error + 2^-8 of the output's scale. Returns the worst
 * ratio (<= 1 passes) and the per-output errors.
 */
export function checkAgainstTruth(g: Graph, label: string, o: { seed?: number; zero?: readonly string[] } = {}) {
  const feeds = { inputs: graphInputs(g), params: graphParams(g) };
  const plan = lowerGraph(g).plan;
  const run = runPlan(plan, feeds, { seed: o.seed });
  const cpu = execute(g, feeds, { seed: o.seed }).outputs;
  const truth = execute(g, feeds, { roundBf16: false, seed: o.seed }).outputs;
  let worst = 0;
  const errors: { name: string; plan: number; cpu: number; scale: number }[] = [];
  for (const [name, t] of truth) {
    const scale = maxAbs(t.data);
    const ours = maxDiff((run.outputs.get(name) as HostTensor).data, t.data);
    const theirs = maxDiff((cpu.get(name) as HostTensor).data, t.data);
    // A value that is zero in exact arithmetic (a key bias's gradient under softmax) is rounding noise
    // in both evaluations: the plan's noise is held within 4x the CPU's.
    const ratio = ours === 0 ? 0 : o.zero?.includes(name) ? ours / (4 * theirs) : ours / (2 * theirs + 2 ** -8 * scale);
    worst = Math.max(worst, ratio);
    errors.push({ name, plan: ours, cpu: theirs, scale });
    if (process.env.PTC_AGREEMENT)
      console.log(
        `${label} ${name}: plan err ${ours.toExponential(2)}, cpu bf16 err ${theirs.toExponential(2)}, scale ${scale.toExponential(2)}`,
      );
    expect(ratio, `${label} ${name}: plan error ${ours} vs the CPU bf16 graph's ${theirs} (scale ${scale})`).toBeLessThanOrEqual(
      1,
    );
  }
  return { worst, errors, run };
}
