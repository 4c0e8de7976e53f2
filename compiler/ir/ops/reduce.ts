// Reductions over a set of axes, and the normalisations that are single ops because every backend
// computes them in one pass (softmax, layerNorm, groupNorm).

import { numel, type Shape, type TensorType } from "../types.ts";
import { attrNumbers, defineOp, fail, floatOnly, normAxis, sameDType } from "./registry.ts";

export const REDUCE_OPS = ["sum", "mean", "max"] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

export function reducedShape(shape: Shape, axes: readonly number[], keepdims: boolean): number[] {
  const set = new Set(axes.map((a) => normAxis(a, shape.length)));
  if (set.size !== axes.length) fail(`reduce: repeated axis in [${axes.join(",")}]`);
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

for (const name of REDUCE_OPS) {
  defineOp({
    name,
    inputs: 1,
    infer([x], attrs) {
      if (name === "mean") floatOnly(name, x);
      return { shape: reducedShape(x.shape, attrNumbers(attrs, "axes"), attrs.keepdims === true), dtype: x.dtype };
    },
    flops: ([x]) => numel(x.shape),
  });
}

defineOp({
  name: "softmax",
  inputs: 1,
  infer([x], attrs) {
    floatOnly("softmax", x);
    normAxis(attrs.axis as number, x.shape.length);
    return x;
  },
  flops: ([x]) => 5 * numel(x.shape),
});

/** layerNorm(x, weight?, bias?) over the last dim; weight and bias have shape [C]. */
defineOp({
  name: "layerNorm",
  inputs: 1,
  maxInputs: 3,
  infer(inputs) {
    const x = inputs[0];
    floatOnly("layerNorm", x);
    sameDType("layerNorm", inputs);
    const c = x.shape[x.shape.length - 1];
    for (const p of inputs.slice(1)) {
      if (p.shape.length !== 1 || p.shape[0] !== c) {
        fail(`layerNorm: weight/bias shape [${p.shape.join(",")}] does not match the last dim ${c}`);
      }
    }
    return x;
  },
  flops: ([x]) => 8 * numel(x.shape),
});

/** groupNorm(x, weight?, bias?) for x = [N, C, ...]: statistics over each group of C/groups channels. */
defineOp({
  name: "groupNorm",
  inputs: 1,
  maxInputs: 3,
  infer(inputs, attrs) {
    const x = inputs[0];
    floatOnly("groupNorm", x);
    sameDType("groupNorm", inputs);
    if (x.shape.length < 2) fail(`groupNorm: input must be [N, C, ...], got rank ${x.shape.length}`);
    const c = x.shape[1];
    const g = attrs.groups as number;
    if (!Number.isInteger(g) || g <= 0 || c % g !== 0) fail(`groupNorm: ${c} channels do not split into ${g} groups`);
    for (const p of inputs.slice(1)) {
      if (p.shape.length !== 1 || p.shape[0] !== c) {
        fail(`groupNorm: weight/bias shape [${p.shape.join(",")}] does not match ${c} channels`);
      }
    }
    return x;
  },
  flops: ([x]: readonly TensorType[]) => 8 * numel(x.shape),
});
