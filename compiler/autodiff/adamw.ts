// The optimizer step as a graph, so every backend runs the same maths: global gradient-norm
// clipping (torch.nn.utils.clip_grad_norm_), non-finite detection, and AdamW with decoupled weight
// decay and bias correction (torch.optim.AdamW). f32 master weights and f32 moments.

import { Graph, type Shape } from "../ir/index.ts";
import { Builder } from "./builder.ts";

export interface AdamWParam {
  readonly name: string;
  readonly shape: Shape;
  /** Apply weight decay to this parameter (see decayExcluded). */
  readonly decay: boolean;
}

export interface AdamWOptions {
  /** Default 0.9. */
  readonly beta1?: number;
  /** Default 0.999. */
  readonly beta2?: number;
  /** Default 1e-8. */
  readonly eps?: number;
  /** Decoupled weight decay (p -= lr * wd * p); default 0.05. */
  readonly weightDecay?: number;
  /** Clip the global gradient norm to this (clip_grad_norm_'s max_norm); default: no clipping. */
  readonly maxGradNorm?: number;
}

export const ADAMW_DEFAULTS = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 } as const;

/** Input/output names of the update graph. */
export const adamwNames = {
  param: (n: string) => `param/${n}`,
  grad: (n: string) => `grad/${n}`,
  m: (n: string) => `m/${n}`,
  v: (n: string) => `v/${n}`,
  /** Scalar inputs: learning rate, 1-based step number (bias correction), gradient multiplier. */
  lr: "lr",
  step: "step",
  gradScale: "gradScale",
  /** Scalar outputs: global gradient norm before clipping, the clip factor applied, 1 if finite else 0. */
  gradNorm: "gradNorm",
  clipScale: "clipScale",
  finite: "finite",
} as const;

/**
 * One AdamW step over `params`. Inputs: `param/<n>` (f32 master), `grad/<n>`, `m/<n>`, `v/<n>` per
 * parameter, and f32 scalars `lr`, `step` (the 1-based number of this step) and `gradScale` (each
 * gradient is multiplied by it first: 1/K after summing K micro-batches, 1/world after a sum
 * all-reduce). Outputs: the new `param/<n>`, `m/<n>`, `v/<n>` (same names as the inputs, so a trainer
 * feeds outputs back), `gradNorm` (the global L2 norm of the scaled gradients, before clipping, as
 * clip_grad_norm_ returns it), `clipScale` (min(1, max/(norm + 1e-6)), or 1 without clipping) and
 * `finite` (1, or 0 when the norm is inf/NaN: then every output equals its input, the step is a
 * no-op, and the trainer counts it as skipped).
 */
export function adamwUpdate(params: readonly AdamWParam[], options: AdamWOptions = {}): Graph {
  const { beta1, beta2, eps, weightDecay } = { ...ADAMW_DEFAULTS, ...options };
  const names = new Set<string>();
  for (const p of params) {
    if (names.has(p.name)) throw new Error(`adamwUpdate: parameter ${p.name} listed twice`);
    names.add(p.name);
  }
  const g = new Graph();
  const b = new Builder(g);
  const io = params.map((p) => ({
    p,
    param: b.input(adamwNames.param(p.name), p.shape),
    grad: b.input(adamwNames.grad(p.name), p.shape),
    m: b.input(adamwNames.m(p.name), p.shape),
    v: b.input(adamwNames.v(p.name), p.shape),
  }));
  const lr = b.input(adamwNames.lr, []);
  const step = b.input(adamwNames.step, []);
  const gradScale = b.input(adamwNames.gradScale, []);
  const c = (x: number) => b.scalar(x, "f32");

  // Global norm of the scaled gradients; inf or NaN anywhere makes it non-finite.
  const grads = io.map((e) => b.mul(e.grad, gradScale));
  let sq = c(0);
  for (const gr of grads) {
    sq = b.add(
      sq,
      b.sum(
        b.mul(gr, gr),
        b.shape(gr).map((_, i) => i),
      ),
    );
  }
  const gradNorm = b.op("sqrt", [sq]);
  const finite = b.op("lt", [gradNorm, c(Number.POSITIVE_INFINITY)]); // NaN < inf and inf < inf are false
  const clipScale =
    options.maxGradNorm !== undefined && options.maxGradNorm > 0
      ? b.op("minimum", [c(1), b.div(c(options.maxGradNorm), b.add(gradNorm, c(1e-6)))])
      : c(1);

  // Bias corrections (torch: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps).
  const bc1 = b.sub(c(1), b.op("pow", [c(beta1), step]));
  const bc2 = b.sub(c(1), b.op("pow", [c(beta2), step]));
  const stepSize = b.div(lr, bc1);
  const bc2Sqrt = b.op("sqrt", [bc2]);
  const decayFactor = b.sub(c(1), b.mul(lr, c(weightDecay)));

  io.forEach((e, i) => {
    const gr = b.mul(grads[i], clipScale);
    const decayed = e.p.decay && weightDecay !== 0 ? b.mul(e.param, decayFactor) : e.param;
    const m = b.add(e.m, b.mul(c(1 - beta1), b.sub(gr, e.m))); // exp_avg.lerp_(grad, 1 - beta1)
    const v = b.add(b.mul(e.v, c(beta2)), b.mul(b.mul(gr, gr), c(1 - beta2)));
    const denom = b.add(b.div(b.op("sqrt", [v]), bc2Sqrt), c(eps));
    const param = b.sub(decayed, b.mul(stepSize, b.div(m, denom)));
    g.setOutput(adamwNames.param(e.p.name), b.where(finite, param, e.param));
    g.setOutput(adamwNames.m(e.p.name), b.where(finite, m, e.m));
    g.setOutput(adamwNames.v(e.p.name), b.where(finite, v, e.v));
  });
  g.setOutput(adamwNames.gradNorm, gradNorm);
  g.setOutput(adamwNames.clipScale, clipScale);
  g.setOutput(adamwNames.finite, finite);
  return g;
}

/**
 * Gradient accumulation over micro-batches: inputs `acc/<n>` and `grad/<n>`, outputs `acc/<n>` =
 * acc + grad. Feed zeros first; after K micro-batches pass the sums to adamwUpdate with gradScale 1/K.
 */
export function accumulateGrads(params: readonly { readonly name: string; readonly shape: Shape }[]): Graph {
  const g = new Graph();
  const b = new Builder(g);
  for (const p of params) {
    const acc = b.input(`acc/${p.name}`, p.shape);
    const grad = b.input(`grad/${p.name}`, p.shape);
    g.setOutput(`acc/${p.name}`, b.add(acc, grad));
  }
  return g;
}
