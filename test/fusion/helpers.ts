// Shared by the fusion tests: tracing a module with a scalar loss, random parameters of a useful
// size, and the fused-vs-unfused comparison of forward outputs and every gradient on the CPU.

import { expect } from "vitest";
import { grad } from "../../compiler/autodiff/index.ts";
import { type AnyTensor, defineModel, F, instance, type Module, spec, traceModel } from "../../compiler/dsl/index.ts";
import { Graph, type Node, numel } from "../../compiler/ir/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";
import { randomNormal } from "../../runtime/run/index.ts";

/** A fixed, non-trivial weighting of y, so loss = sum(y * probe) sends a different gradient to every element. */
function probe(shape: readonly number[]): number[] {
  return Array.from({ length: numel(shape) }, (_, i) => Math.sin(0.37 * i + 0.5) + 0.25 * Math.cos(1.91 * i));
}

/**
 * Traces `forward(module, ...inputs)` with the given input shapes; outputs `y` and `loss` =
 * sum(y * probe). Training mode when asked (dropout active).
 */
export function traceWithLoss<M extends Module>(
  module: M,
  inputs: Record<string, readonly number[]>,
  forward: (m: M, x: Record<string, AnyTensor>) => AnyTensor,
  opts: { training?: boolean; dtype?: "f32" | "bf16" } = {},
): Graph {
  const def = defineModel({
    name: "case",
    configs: { only: {} },
    defaultConfig: "only",
    create: () =>
      instance({
        module,
        inputs: Object.fromEntries(Object.entries(inputs).map(([k, s]) => [k, spec([...s])])),
        forward: (xs: Record<string, AnyTensor>) => {
          const cast = Object.fromEntries(Object.entries(xs).map(([k, t]) => [k, opts.dtype === "bf16" ? t.cast("bf16") : t]));
          const y = forward(module, cast).cast("f32");
          const dims = y.shape as readonly number[];
          const loss = y.mul(F.constant(probe(dims), [...dims])).sum([...dims.keys()]);
          return { y, loss } as never;
        },
      }),
  });
  return dce(cse(traceModel(def, { training: opts.training }).graph));
}

/**
 * Parameters with O(1) logits: 2-D weights ~ N(0, 1/fan_in) * gain, everything else ~ N(0, 0.5)
 * (biases, tables, gates), and V2's logit scale around log(10) with head 1 (if any) above the log(100) clamp.
 */
export function randomParams(g: Graph, seed: number, gain = 1.5): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const p of g.params()) {
    const name = String(p.attrs.name);
    const t = randomNormal(p.shape, seed, name);
    const d = t.data as Float32Array;
    if (/logitScale$/.test(name)) for (let i = 0; i < d.length; i++) d[i] = i === 1 ? Math.log(150) : Math.log(10) + 0.5 * d[i];
    else if (p.shape.length >= 2 && !/Table$/.test(name)) {
      const s = gain / Math.sqrt(numel(p.shape.slice(1)));
      for (let i = 0; i < d.length; i++) d[i] *= s;
    } else for (let i = 0; i < d.length; i++) d[i] *= 0.5;
    out.set(name, t);
  }
  return out;
}

export function randomInputs(g: Graph, seed: number): Map<string, HostTensor> {
  return new Map(g.inputs().map((n) => [String(n.attrs.name), randomNormal(n.shape, seed, String(n.attrs.name))]));
}

/** max |a - b| and max |b| over two tensors of the same shape. */
export function difference(a: HostTensor, b: HostTensor): { diff: number; scale: number } {
  expect(a.shape).toEqual(b.shape);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    diff = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(b.data[i]));
  }
  return { diff, scale };
}

export interface Comparison {
  /** Worst max|fused - unfused| / max|unfused| over the forward outputs. */
  forward: number;
  /** The same over every gradient whose scale is not negligible. */
  gradients: number;
  /** Gradients that are zero up to rounding in both graphs (e.g. a key bias under softmax). */
  zero: string[];
  /** The output with the largest relative difference. */
  worst: string;
}

/** The module a gradient output belongs to: `grad/decoder.cross.2.attn.q.weight` -> `decoder.cross.2`. */
const moduleOf = (name: string) =>
  name
    .replace(/^grad(Input)?\//, "")
    .split(".")
    .slice(0, 3)
    .join(".");

/**
 * Runs the unfused and fused graphs' gradients (params and the listed inputs) on the CPU with the
 * same feeds and compares every output, relative to its scale. A gradient's scale is its largest
 * element, but at least 1e-3 of the largest gradient in its module (first three name components):
 * some gradients are a small residue of cancelling terms in both graphs (a query weight under
 * near-uniform attention: ~1e-5 of its module's gradients), and their f32 rounding differences are
 * relative to the terms, not the residue. A gradient below 1e-7 of the largest of all is compared
 * in absolute terms (both must stay below that) and listed in `zero`.
 */
export function compareFused(
  unfused: Graph,
  fused: Graph,
  params: ReadonlyMap<string, HostTensor>,
  inputs: ReadonlyMap<string, HostTensor>,
  wrtInputs: readonly string[] = [],
): Comparison {
  const run = (g: Graph) => execute(grad(g, { loss: "loss", wrtInputs }), { params, inputs }).outputs;
  const a = run(unfused);
  const b = run(fused);
  const forwardNames = new Set(unfused.outputs.keys());
  const moduleScale = new Map<string, number>();
  let largest = 0;
  for (const [k, t] of a) {
    if (forwardNames.has(k)) continue;
    const s = difference(t, t).scale;
    largest = Math.max(largest, s);
    moduleScale.set(moduleOf(k), Math.max(moduleScale.get(moduleOf(k)) ?? 0, s));
  }
  let forward = 0;
  let gradients = 0;
  const zero: string[] = [];
  let worst = "";
  for (const [k, want] of a) {
    const got = b.get(k) as HostTensor;
    const { diff, scale } = difference(got, want);
    if (forwardNames.has(k)) {
      forward = Math.max(forward, diff / scale);
      continue;
    }
    if (scale < 1e-7 * largest) {
      expect(diff, `${k}: fused and unfused should both be ~0`).toBeLessThan(1e-7 * largest);
      zero.push(k);
      continue;
    }
    const rel = diff / Math.max(scale, 1e-3 * (moduleScale.get(moduleOf(k)) ?? 0));
    if (rel > gradients) [gradients, worst] = [rel, k];
  }
  return { forward, gradients, zero, worst };
}

/** A copy of `g` with node `id`'s attributes changed (to build near-miss patterns). */
export function withAttrs(g: Graph, id: number, attrs: Record<string, unknown>): Graph {
  const out = new Graph();
  for (const n of g.nodes)
    out.add(n.op, n.inputs, n.id === id ? ({ ...n.attrs, ...attrs } as Node["attrs"]) : n.attrs, n.loc, n.scope);
  for (const [k, v] of g.outputs) out.setOutput(k, v);
  return out;
}
