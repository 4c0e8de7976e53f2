// Ops that move data without arithmetic: reshape, permute, roll, slice, concat, pad, take,
// broadcastTo. Shape rules that TypeScript cannot prove (element counts) are checked here.

import { numel } from "../types.ts";
import { attrNumbers, defineOp, fail, normAxis, sameDType } from "./registry.ts";

const noFlops = () => 0;

/** Resolves one -1 in a reshape target against the element count. */
export function resolveReshape(from: readonly number[], to: readonly number[]): number[] {
  const n = numel(from);
  const holes = to.filter((d) => d === -1).length;
  if (holes > 1) fail(`reshape: at most one -1 allowed in [${to.join(",")}]`);
  for (const d of to) if (d !== -1 && (!Number.isInteger(d) || d < 0)) fail(`reshape: bad dim ${d} in [${to.join(",")}]`);
  if (holes === 1) {
    const known = numel(to.filter((d) => d !== -1));
    if (known === 0 || n % known !== 0) fail(`reshape: cannot reshape [${from.join(",")}] (${n} elements) to [${to.join(",")}]`);
    return to.map((d) => (d === -1 ? n / known : d));
  }
  if (numel(to) !== n) {
    fail(`reshape: [${from.join(",")}] has ${n} elements but [${to.join(",")}] has ${numel(to)}`);
  }
  return [...to];
}

defineOp({
  name: "reshape",
  inputs: 1,
  infer([x], attrs) {
    return { shape: resolveReshape(x.shape, attrNumbers(attrs, "shape")), dtype: x.dtype };
  },
  flops: noFlops,
});

defineOp({
  name: "permute",
  inputs: 1,
  infer([x], attrs) {
    const perm = attrNumbers(attrs, "perm");
    const r = x.shape.length;
    if (perm.length !== r) fail(`permute: ${perm.length} axes given for a rank-${r} tensor`);
    const seen = new Set(perm.map((p) => normAxis(p, r)));
    if (seen.size !== r) fail(`permute: [${perm.join(",")}] is not a permutation of ${r} axes`);
    return { shape: perm.map((p) => x.shape[normAxis(p, r)]), dtype: x.dtype };
  },
  flops: noFlops,
});

defineOp({
  name: "roll",
  inputs: 1,
  infer([x], attrs) {
    const shifts = attrNumbers(attrs, "shifts");
    const axes = attrNumbers(attrs, "axes");
    if (shifts.length !== axes.length) fail(`roll: ${shifts.length} shifts for ${axes.length} axes`);
    for (const a of axes) normAxis(a, x.shape.length);
    return x;
  },
  flops: noFlops,
});

/** Per-axis [start, end) with a positive step; bounds are already clamped by the DSL. */
defineOp({
  name: "slice",
  inputs: 1,
  infer([x], attrs) {
    const starts = attrNumbers(attrs, "starts");
    const ends = attrNumbers(attrs, "ends");
    const steps = attrNumbers(attrs, "steps");
    const r = x.shape.length;
    if (starts.length !== r || ends.length !== r || steps.length !== r) fail(`slice: need one start/end/step per axis`);
    const shape = x.shape.map((d, i) => {
      const s = starts[i];
      const e = ends[i];
      const st = steps[i];
      if (!(st > 0) || !Number.isInteger(st)) fail(`slice: step must be a positive integer, got ${st}`);
      if (s < 0 || e > d || s > e) fail(`slice: range ${s}:${e} out of bounds for dim ${d}`);
      return Math.ceil((e - s) / st);
    });
    return { shape, dtype: x.dtype };
  },
  flops: noFlops,
});

defineOp({
  name: "concat",
  inputs: "variadic",
  infer(inputs, attrs) {
    if (inputs.length === 0) fail("concat: no inputs");
    const dtype = sameDType("concat", inputs);
    const r = inputs[0].shape.length;
    const axis = normAxis(attrs.axis as number, r);
    const shape = [...inputs[0].shape];
    shape[axis] = 0;
    for (const t of inputs) {
      if (t.shape.length !== r) fail(`concat: ranks differ (${inputs.map((i) => i.shape.length).join(", ")})`);
      t.shape.forEach((d, i) => {
        if (i !== axis && d !== inputs[0].shape[i]) {
          fail(`concat: shapes ${inputs.map((i) => `[${i.shape.join(",")}]`).join(" and ")} differ off axis ${axis}`);
        }
      });
      shape[axis] += t.shape[axis];
    }
    return { shape, dtype };
  },
  flops: noFlops,
});

/** Constant padding: pads = [before0, after0, before1, after1, ...], one pair per axis. */
defineOp({
  name: "pad",
  inputs: 1,
  infer([x], attrs) {
    const pads = attrNumbers(attrs, "pads");
    if (pads.length !== 2 * x.shape.length) fail(`pad: need ${2 * x.shape.length} pad values, got ${pads.length}`);
    if (pads.some((p) => p < 0 || !Number.isInteger(p))) fail(`pad: pads must be non-negative integers`);
    return { shape: x.shape.map((d, i) => d + pads[2 * i] + pads[2 * i + 1]), dtype: x.dtype };
  },
  flops: noFlops,
});

/** take(x, index) along `axis`: out = x.shape[:axis] + index.shape + x.shape[axis+1:] (numpy.take). */
defineOp({
  name: "take",
  inputs: 2,
  infer([x, index], attrs) {
    if (index.dtype !== "i32") fail(`take: index must be i32, got ${index.dtype}`);
    const axis = normAxis(attrs.axis as number, x.shape.length);
    return { shape: [...x.shape.slice(0, axis), ...index.shape, ...x.shape.slice(axis + 1)], dtype: x.dtype };
  },
  flops: noFlops,
});

defineOp({
  name: "broadcastTo",
  inputs: 1,
  infer([x], attrs) {
    const shape = attrNumbers(attrs, "shape");
    const off = shape.length - x.shape.length;
    if (off < 0) fail(`broadcastTo: cannot broadcast [${x.shape.join(",")}] to lower rank [${shape.join(",")}]`);
    x.shape.forEach((d, i) => {
      if (d !== 1 && d !== shape[off + i]) fail(`broadcastTo: cannot broadcast [${x.shape.join(",")}] to [${shape.join(",")}]`);
    });
    return { shape: [...shape], dtype: x.dtype };
  },
  flops: noFlops,
});
