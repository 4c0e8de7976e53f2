// A whole training step as one graph: forward, loss, backward and the AdamW update, for the common
// case without gradient accumulation (with accumulation the trainer runs grad() per micro-batch,
// accumulateGrads, then adamwUpdate). Graphs are joined by `splice`.

import { type Graph, type Shape, UserError } from "../ir/index.ts";
import { cse, dce } from "../passes/index.ts";
import { type AdamWOptions, adamwNames, adamwUpdate } from "./adamw.ts";
import { adamwParams, decayExcluded } from "./decay.ts";
import { grad, gradName } from "./grad.ts";

/**
 * Copies `source` into `target`: each source input named in `bind` becomes that target node; other
 * source inputs become target inputs (reusing a target input of the same name, which must have the
 * same type). Returns the source's outputs as target node ids.
 */
export function splice(target: Graph, source: Graph, bind: ReadonlyMap<string, number>): Map<string, number> {
  const existing = new Map(target.inputs().map((n) => [String(n.attrs.name), n]));
  const remap: number[] = [];
  for (const n of source.nodes) {
    if (n.op === "input") {
      const name = String(n.attrs.name);
      const bound = bind.get(name) ?? existing.get(name)?.id;
      if (bound !== undefined) {
        const t = target.node(bound);
        if (t.shape.join() !== n.shape.join() || t.dtype !== n.dtype) {
          throw new Error(`splice: input ${name} is ${n.dtype}[${n.shape}] but is bound to ${t.dtype}[${t.shape}]`);
        }
        remap[n.id] = bound;
        continue;
      }
    }
    remap[n.id] = target.copy(
      n,
      n.inputs.map((i) => remap[i]),
    ).id;
  }
  return new Map([...source.outputs].map(([k, id]) => [k, remap[id]]));
}

export interface TrainingStepOptions extends AdamWOptions {
  /** The scalar loss output of the forward graph. */
  readonly loss: string;
  /** Parameters to train; default every floating-point parameter (the rest stay frozen). */
  readonly wrt?: readonly string[];
  /** Decay exclusion rule; default decayExcluded. */
  readonly exclude?: (name: string, shape: Shape) => boolean;
}

/**
 * forward + grad + adamwUpdate in one graph. Parameters stay `param` nodes (the f32 masters); the
 * graph's inputs are the forward's plus `m/<n>`, `v/<n>`, `lr`, `step`, `gradScale`; its outputs are
 * the forward's, then the new `param/<n>`, `m/<n>`, `v/<n>`, and `gradNorm`, `clipScale`, `finite`
 * (see adamwUpdate). A trainer writes `param/<n>` back into parameter `<n>`.
 */
export function trainingStep(forward: Graph, options: TrainingStepOptions): Graph {
  const g = grad(forward, { loss: options.loss, wrt: options.wrt, optimize: false });
  const trained = new Set(
    options.wrt ??
      g
        .params()
        .filter((p) => p.dtype !== "i32")
        .map((p) => String(p.attrs.name)),
  );
  const params = adamwParams(g, options.exclude ?? decayExcluded).filter((p) => trained.has(p.name));
  const update = adamwUpdate(params, options);
  const bind = new Map<string, number>();
  const paramIds = new Map(g.params().map((p) => [String(p.attrs.name), p.id]));
  for (const p of params) {
    bind.set(adamwNames.param(p.name), paramIds.get(p.name) as number);
    bind.set(adamwNames.grad(p.name), g.outputs.get(gradName(p.name)) as number);
    g.outputs.delete(gradName(p.name));
  }
  const outs = splice(g, update, bind);
  for (const [name, id] of outs) {
    if (g.outputs.has(name)) throw new UserError(`trainingStep: output name '${name}' is taken by the forward graph`);
    g.setOutput(name, id);
  }
  return dce(cse(g));
}
