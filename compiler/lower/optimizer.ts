// AdamW over packs: the whole optimizer step of compiler/autodiff's adamwUpdate graph in three
// launches, whatever the number of parameters, over flat f32 buffers laid out by one PackLayout
// (the trainer's masters, gradient sum and moments). The graph lowered op by op is ~9 launches per
// tensor (2,256 for PerceptNet xxs's 250 tensors); here:
//   1. adamw_sum_squares   per chunk of the chunk table: sum of (grad * gradScale)^2
//   2. adamw_scalars       one CTA: the norm from the partials (fixed order), finite, clip scale,
//                          bias corrections, step size, decay factor
//   3. adamw_packed        every element: the graph's update, decay per chunk (tag), outputs equal
//                          to the inputs when the norm is not finite
// Same names for the scalars as adamwNames; packs are "$params", "$grads", "$m", "$v" (inputs) and
// "$params", "$m", "$v" (outputs, so a trainer copies them back).

import { type AdamWConstants, adamwPackedKernel, adamwScalarsKernel, adamwSumSquaresKernel } from "../../kernels/multi-tensor.ts";
import { Graph } from "../ir/index.ts";
import type { KernelProgram } from "../tile/index.ts";
import { analyse } from "./analysis.ts";
import { LowerContext } from "./context.ts";
import { cachedKernel } from "./kernel-cache.ts";
import { assemblePlan } from "./lower.ts";
import { contentNamed } from "./naming.ts";
import { CHUNK_ELEMENTS_DEFAULT, chunkTable, type PackLayout } from "./pack.ts";
import type { ExecutablePlan } from "./plan.ts";

export const packedAdamwNames = {
  params: "$params",
  grads: "$grads",
  m: "$m",
  v: "$v",
  lr: "lr",
  step: "step",
  gradScale: "gradScale",
  gradNorm: "gradNorm",
  clipScale: "clipScale",
  finite: "finite",
} as const;

export interface PackedAdamW {
  readonly plan: ExecutablePlan;
  readonly programs: readonly KernelProgram[];
}

/**
 * The AdamW step over `layout`'s members; `decay(name)` says which decay (adamwParams' flag).
 * `constants` are adamwUpdate's options resolved (defaults applied by the caller).
 */
export function lowerPackedAdamW(layout: PackLayout, decay: (name: string) => boolean, constants: AdamWConstants): PackedAdamW {
  const ctx = new LowerContext(new Graph(), analyse(new Graph()));
  const E = layout.elements;
  const input = (name: string, shape: number[]) => {
    const b = ctx.newBuffer(shape, "f32", "input", { name });
    ctx.inputs[name] = b;
    return b;
  };
  const output = (name: string, shape: number[]) => {
    const b = ctx.newBuffer(shape, "f32", "output", { name });
    ctx.outputs[name] = b;
    return b;
  };
  const n = packedAdamwNames;
  const [param, grad, m, v] = [input(n.params, [E]), input(n.grads, [E]), input(n.m, [E]), input(n.v, [E])];
  const [lr, step, gradScale] = [input(n.lr, []), input(n.step, []), input(n.gradScale, [])];
  const [paramOut, mOut, vOut] = [output(n.params, [E]), output(n.m, [E]), output(n.v, [E])];
  const [gradNorm, clipScale, finite] = [output(n.gradNorm, []), output(n.clipScale, []), output(n.finite, [])];
  const decays = constants.weightDecay !== 0;
  const table = chunkTable(
    layout.members.map((mm) => ({ offset: mm.offset, size: mm.size, tag: decays && decay(mm.name) ? 1 : 0 })),
    CHUNK_ELEMENTS_DEFAULT,
  );
  const chunks = table.length / 3;
  const tableBuf = ctx.constBuffer([table.length], "i32", table);
  const partial = ctx.newBuffer([chunks], "f32");
  const coef = ctx.newBuffer([8], "f32");
  const label = (what: string) => `${what} (AdamW over ${layout.members.length} tensors, ${E} elements)`;
  ctx.launch(
    cachedKernel(adamwSumSquaresKernel, undefined),
    {
      table: { buffer: tableBuf },
      grad: { buffer: grad },
      gradScale: { buffer: gradScale },
      partial: { buffer: partial },
      chunks,
    },
    { writes: ["partial"], nodes: [], label: label("sum of squares") },
  );
  ctx.launch(
    contentNamed("adamw_scalars", (name) => adamwScalarsKernel(name, constants)),
    {
      partial: { buffer: partial },
      lr: { buffer: lr },
      step: { buffer: step },
      gradNorm: { buffer: gradNorm },
      clipScale: { buffer: clipScale },
      finite: { buffer: finite },
      coef: { buffer: coef },
      chunks,
    },
    { writes: ["gradNorm", "clipScale", "finite", "coef"], nodes: [], label: label("norm, clip and bias corrections") },
  );
  ctx.launch(
    contentNamed("adamw_packed", (name) => adamwPackedKernel(name, constants)),
    {
      table: { buffer: tableBuf },
      param: { buffer: param },
      grad: { buffer: grad },
      m: { buffer: m },
      v: { buffer: v },
      gradScale: { buffer: gradScale },
      coef: { buffer: coef },
      paramOut: { buffer: paramOut },
      mOut: { buffer: mOut },
      vOut: { buffer: vOut },
      chunks,
    },
    { writes: ["paramOut", "mOut", "vOut"], nodes: [], label: label("update") },
  );
  return { plan: assemblePlan(ctx), programs: ctx.programs };
}
