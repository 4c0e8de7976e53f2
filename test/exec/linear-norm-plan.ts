// A hand-made plan for the executor tests (emulator and GPU): cast a f32 param to bf16, GEMM,
// LayerNorm with constant weights, softmax, and an output that is a view; and its CPU reference.
import { Graph } from "../../compiler/ir/index.ts";
import type { ExecutablePlan } from "../../compiler/lower/plan.ts";
import { elementwiseKernel } from "../../kernels/elementwise.ts";
import { gemmKernel } from "../../kernels/gemm.ts";
import { layerNormForward } from "../../kernels/layernorm.ts";
import { softmaxForward } from "../../kernels/softmax.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { randomTensor } from "../kernels/harness.ts";
import { PlanBuilder } from "./plan-builder.ts";

// M is not a multiple of the GEMM's 128-row tile (the tails run); K and N are multiples of 8, as
// the row kernels' 16-byte vectors need.
export const M = 40;
export const K = 48;
export const N = 48;
const EPS = 1e-5;

function constants(): { gamma: HostTensor; beta: HostTensor } {
  return { gamma: randomTensor([N], 3, { offset: 1, scale: 0.5 }), beta: randomTensor([N], 4, { scale: 0.5 }) };
}

/** x[M,K] bf16 @ cast(w[K,N] f32 -> bf16) -> layerNorm(gamma, beta) -> softmax; outputs probs and normed (a view). */
export function linearNormPlan(): ExecutablePlan {
  const { gamma, beta } = constants();
  const b = new PlanBuilder();
  const x = b.buffer("input", [M, K], "bf16", { name: "x" });
  const w = b.buffer("param", [K, N], "f32", { name: "w" });
  const wb = b.buffer("temp", [K, N], "bf16");
  const h = b.buffer("temp", [M, N], "bf16");
  const g = b.buffer("const", [N], "bf16", { data: gamma.data as Float32Array });
  const be = b.buffer("const", [N], "bf16", { data: beta.data as Float32Array });
  const y = b.buffer("temp", [M, N], "bf16");
  b.view(y, [M * N], { role: "output", name: "normed" });
  const p = b.buffer("output", [M, N], "bf16", { name: "probs" });
  const cast = elementwiseKernel({
    name: "cast_f32_bf16_48x48",
    inputs: [{ dtype: "f32", shape: [K, N] }],
    out: { dtype: "bf16", shape: [K, N] },
    fn: (xs) => xs[0],
  });
  b.launch(cast, { in0: { buffer: w }, out: { buffer: wb } }, ["out"], "cast %2 @ w");
  b.launch(
    gemmKernel({ layout: "nn", out: "bf16" }),
    { a: { buffer: x }, b: { buffer: wb }, c: { buffer: h }, M, N, K, lda: K, ldb: N, ldc: N },
    ["c"],
    "matmul %3 @ linear",
  );
  b.launch(
    layerNormForward({ dtype: "bf16" }),
    { x: { buffer: h }, y: { buffer: y }, w: { buffer: g }, b: { buffer: be }, rows: M, cols: N, eps: EPS },
    ["y"],
    "layerNorm %6 @ norm",
  );
  b.launch(
    softmaxForward({ dtype: "bf16" }),
    { x: { buffer: y }, y: { buffer: p }, rows: M, cols: N },
    ["y"],
    "softmax %8 @ head",
  );
  return b.build();
}

export function cpuReference(x: HostTensor, w: HostTensor): Map<string, HostTensor> {
  const { gamma, beta } = constants();
  const g = new Graph();
  const xi = g.add("input", [], { name: "x", shape: [M, K], dtype: "bf16" });
  const wi = g.add("param", [], { name: "w", shape: [K, N], dtype: "f32", init: "zeros", initArgs: [] });
  const wb = g.add("cast", [wi.id], { dtype: "bf16" });
  const h = g.add("matmul", [xi.id, wb.id], {});
  const gc = g.add("const", [], { shape: [N], dtype: "bf16", data: gamma.data });
  const bc = g.add("const", [], { shape: [N], dtype: "bf16", data: beta.data });
  const y = g.add("layerNorm", [h.id, gc.id, bc.id], { eps: EPS });
  g.setOutput("normed", g.add("reshape", [y.id], { shape: [M * N] }).id);
  g.setOutput("probs", g.add("softmax", [y.id], { axis: -1 }).id);
  return execute(g, { inputs: { x }, params: { w } }).outputs;
}

// Tolerances. h = x @ w: both sides accumulate in f32 (different order) and round once to bf16, so
// an element may land one bf16 ulp (2^-8 relative) away. LayerNorm turns a one-ulp change of h into
// ~2^-8 |h| rstd <= 2^-8 (|y| + |mean| rstd) in y, plus y's own rounding (one ulp each side): bound
// 2^-6 |y| + 2^-6 absolute (|mean| rstd < 1 for these inputs; the mean of N=48 uniform values).
// softmax of y: exp(y) moves by the same absolute 2^-6 relative, plus one ulp: 2^-5 relative.
export const normedTol = (_i: number, want: number) => 2 ** -6 * Math.abs(want) + 2 ** -6;
export const probsTol = (_i: number, want: number) => 2 ** -5 * Math.abs(want) + 1e-6;
