// Gradients of the data-movement ops: each is the adjoint movement (reshape back, inverse permute,
// opposite roll, slice <-> pad, scatter-add for take, sum for broadcast).

import type { Builder } from "../builder.ts";
import { registerGradient } from "../registry.ts";

const norm = (a: number, r: number) => (a < 0 ? a + r : a);

registerGradient("reshape", ({ b, inputs, dy }) => [b.reshape(dy, inputs[0].shape)]);

registerGradient("permute", ({ b, node, inputs, dy }) => {
  const r = inputs[0].shape.length;
  const perm = (node.attrs.perm as number[]).map((p) => norm(p, r));
  const inverse = new Array<number>(r);
  perm.forEach((p, i) => {
    inverse[p] = i;
  });
  return [b.permute(dy, inverse)];
});

registerGradient("roll", ({ b, node, dy }) => [
  b.op("roll", [dy], { shifts: (node.attrs.shifts as number[]).map((s) => -s), axes: [...(node.attrs.axes as number[])] }),
]);

registerGradient("broadcastTo", ({ b, inputs, dy }) => [b.sumTo(dy, inputs[0].shape)]);

registerGradient("pad", ({ b, node, inputs, dy }) => {
  const pads = node.attrs.pads as number[];
  const shape = inputs[0].shape;
  return [
    b.slice(
      dy,
      shape.map((_, i) => pads[2 * i]),
      shape.map((d, i) => pads[2 * i] + d),
    ),
  ];
});

/**
 * The adjoint of a strided slice: scatter dy back into zeros. Along an axis with step s, each element
 * is followed by s-1 zeros (pad a new unit axis, merge), then the result is placed at `start` by
 * padding (or trimming trailing zeros past the end).
 */
function unslice(
  b: Builder,
  dy: number,
  inShape: readonly number[],
  starts: readonly number[],
  steps: readonly number[],
): number {
  let t = dy;
  for (let a = 0; a < inShape.length; a++) {
    const st = steps[a];
    if (st === 1) continue;
    const s = b.shape(t);
    const expanded = [...s.slice(0, a + 1), 1, ...s.slice(a + 1)];
    const pads = expanded.flatMap((_, i) => (i === a + 1 ? [0, st - 1] : [0, 0]));
    const spread = b.pad(b.reshape(t, expanded), pads);
    t = b.reshape(
      spread,
      s.map((d, i) => (i === a ? d * st : d)),
    );
  }
  const s = b.shape(t);
  const keep = s.map((m, a) => Math.min(m, inShape[a] - starts[a]));
  if (keep.some((k, a) => k !== s[a])) {
    t = b.slice(
      t,
      s.map(() => 0),
      keep,
    );
  }
  return b.pad(
    t,
    inShape.flatMap((d, a) => [starts[a], d - starts[a] - keep[a]]),
  );
}

registerGradient("slice", ({ b, node, inputs, dy }) => [
  unslice(b, dy, inputs[0].shape, node.attrs.starts as number[], node.attrs.steps as number[]),
]);

registerGradient("concat", ({ b, node, inputs, dy, needs }) => {
  const r = node.shape.length;
  const axis = norm(node.attrs.axis as number, r);
  let off = 0;
  return inputs.map((x, i) => {
    const start = off;
    off += x.shape[axis];
    if (!needs[i]) return undefined;
    return b.slice(
      dy,
      node.shape.map((_, a) => (a === axis ? start : 0)),
      node.shape.map((d, a) => (a === axis ? start + x.shape[axis] : d)),
    );
  });
});

registerGradient("take", ({ b, node, inputs, dy }) => {
  const [x, index] = inputs;
  const axis = norm(node.attrs.axis as number, x.shape.length);
  return [b.op("takeBackward", [dy, index.id], { axis, size: x.shape[axis] }), undefined];
});

// Leaves: the driver stops at inputs and parameters; constants carry no gradient.
registerGradient("const", () => []);
