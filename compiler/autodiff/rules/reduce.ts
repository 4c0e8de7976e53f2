// Gradients of the reductions, softmax and the normalisations. A reduction's gradient re-inserts
// the reduced axes (reshape to keepdims form) and broadcasts back. max splits the gradient evenly
// among tied maxima (as torch.amax).

import { numel } from "../../ir/index.ts";
import type { Builder } from "../builder.ts";
import { registerGradient } from "../registry.ts";

function normAxes(axes: readonly number[], rank: number): number[] {
  return axes.map((a) => (a < 0 ? a + rank : a));
}

/** dy (reduced, keepdims or not) reshaped so it broadcasts against the input. */
function keepdims(b: Builder, dy: number, inShape: readonly number[], axes: readonly number[]): number {
  const set = new Set(normAxes(axes, inShape.length));
  return b.reshape(
    dy,
    inShape.map((d, i) => (set.has(i) ? 1 : d)),
  );
}

registerGradient("sum", ({ b, node, inputs, dy }) => {
  const x = inputs[0];
  return [b.broadcastTo(keepdims(b, dy, x.shape, node.attrs.axes as number[]), x.shape)];
});

registerGradient("mean", ({ b, node, inputs, dy }) => {
  const x = inputs[0];
  const count = numel(x.shape) / Math.max(1, numel(node.shape));
  return [b.broadcastTo(b.scale(keepdims(b, dy, x.shape, node.attrs.axes as number[]), 1 / count), x.shape)];
});

registerGradient("max", ({ b, node, inputs, dy }) => {
  const x = inputs[0];
  const axes = node.attrs.axes as number[];
  const mask = b.op("eq", [x.id, keepdims(b, node.id, x.shape, axes)]);
  const count = b.sum(mask, axes, true);
  return [b.mul(mask, b.div(keepdims(b, dy, x.shape, axes), count))];
});

// y = softmax(x): dx = y * (dy - sum(dy * y))
registerGradient("softmax", ({ b, node, dy }) => {
  const y = node.id;
  const s = b.sum(b.mul(dy, y), [node.attrs.axis as number], true);
  return [b.mul(y, b.sub(dy, s))];
});

// layerNorm(x, w?, bias?): dx by the dedicated op; dw = sum(dy * xhat), dbias = sum(dy) over rows.
registerGradient("layerNorm", ({ b, node, inputs, dy, needs }) => {
  const [x, w] = inputs;
  const eps = node.attrs.eps as number;
  const c = x.shape[x.shape.length - 1];
  const dx = needs[0] ? b.op("layerNormBackward", w ? [x.id, dy, w.id] : [x.id, dy], { eps }) : undefined;
  const dw = w && needs[1] ? b.sumTo(b.mul(dy, b.op("layerNorm", [x.id], { eps })), [c]) : undefined;
  const dbias = inputs.length > 2 && needs[2] ? b.sumTo(dy, [c]) : undefined;
  return [dx, dw, dbias];
});

// groupNorm(x [N, C, ...], w?, bias?): per-channel sums over the batch and spatial axes.
registerGradient("groupNorm", ({ b, node, inputs, dy, needs }) => {
  const [x, w] = inputs;
  const attrs = { groups: node.attrs.groups as number, eps: node.attrs.eps as number };
  const c = x.shape[1];
  const axes = x.shape.map((_, i) => i).filter((i) => i !== 1);
  const perChannel = (t: number) => b.reshape(b.sum(t, axes), [c]);
  const dx = needs[0] ? b.op("groupNormBackward", w ? [x.id, dy, w.id] : [x.id, dy], attrs) : undefined;
  const dw = w && needs[1] ? perChannel(b.mul(dy, b.op("groupNorm", [x.id], attrs))) : undefined;
  const dbias = inputs.length > 2 && needs[2] ? perChannel(dy) : undefined;
  return [dx, dw, dbias];
});
