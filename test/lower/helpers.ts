// Shared by the lowering tests: small graphs built from IR ops, random feeds, and the check that a
// lowered plan run on the PTX emulator (run-plan.ts) agrees with runtime/cpu's execute of the same
// graph on every output.
//
// Tolerances, per output element (scale = the output's largest |value|):
//   f32   2e-5 * scale + 2e-5 * |want|: the kernels accumulate in f32 where the CPU accumulates in
//         f64; sums of up to a few hundred O(1) terms stay within ~1e-6 of the scale (measured).
//   bf16  2^-7 * |want| + 2^-7 * scale: one rounding of the result may land on the neighbouring bf16
//         value (2^-8..2^-7 relative), and a fused kernel rounds intermediates the unfused graph
//         stores once less, which moves a result by at most one bf16 step of the largest intermediate
//         (of the order of the output's scale in these graphs).
//   i32   exact.

import { expect } from "vitest";
import { type DType, Graph, type Node, numel } from "../../compiler/ir/index.ts";
import { type LoweredGraph, lowerGraph } from "../../compiler/lower/index.ts";
import { execute, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { randomTensor } from "../kernels/harness.ts";
import { type PlanRun, runPlan } from "./run-plan.ts";

export type Tolerance = (want: number, scale: number) => number;

export const TOLERANCE: Record<DType, Tolerance> = {
  f32: (w, s) => 2e-5 * s + 2e-5 * Math.abs(w),
  bf16: (w, s) => 2 ** -7 * Math.abs(w) + 2 ** -7 * s,
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
  return { lowered, run, worst, outputs };
}
