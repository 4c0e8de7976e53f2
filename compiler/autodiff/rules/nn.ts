// Gradients of matmul, conv2d, resampling and the stochastic masks.

import { registerGradient } from "../registry.ts";

/**
 * C = op(A) op(B) with op = transpose when trans*: dop(A) = dC op(B)^T, dop(B) = op(A)^T dC, each
 * folded into one matmul with the right transpose flags; broadcast batch dims are summed back.
 */
registerGradient("matmul", ({ b, node, inputs, dy, needs }) => {
  const [x, w] = inputs;
  const ta = node.attrs.transA === true;
  const tb = node.attrs.transB === true;
  const dx = needs[0] ? (ta ? b.matmul(w.id, dy, tb, true) : b.matmul(dy, w.id, false, !tb)) : undefined;
  const dw = needs[1] ? (tb ? b.matmul(dy, x.id, true, ta) : b.matmul(x.id, dy, !ta, false)) : undefined;
  return [dx === undefined ? undefined : b.sumTo(dx, x.shape), dw === undefined ? undefined : b.sumTo(dw, w.shape)];
});

registerGradient("conv2d", ({ b, node, inputs, dy, needs }) => {
  const [x, w, bias] = inputs;
  const conv = {
    stride: node.attrs.stride,
    padding: node.attrs.padding,
    dilation: node.attrs.dilation,
    groups: node.attrs.groups,
  };
  const dx = needs[0] ? b.op("conv2dBackwardInput", [dy, w.id], { ...conv, inputSize: [x.shape[2], x.shape[3]] }) : undefined;
  const dw = needs[1] ? b.op("conv2dBackwardWeight", [x.id, dy], { ...conv, kernelSize: [w.shape[2], w.shape[3]] }) : undefined;
  const db = bias && needs[2] ? b.sum(dy, [0, 2, 3]) : undefined;
  return [dx, dw, db];
});

registerGradient("upsample", ({ b, node, inputs, dy }) => {
  const x = inputs[0];
  return [
    b.op("upsampleBackward", [dy], {
      inputSize: [x.shape[2], x.shape[3]],
      mode: node.attrs.mode,
      alignCorners: node.attrs.alignCorners === true,
    }),
  ];
});

// pixelShuffle is reshape [N,C,r,r,H,W] -> permute [N,C,H,r,W,r] -> reshape; its adjoint undoes it.
registerGradient("pixelShuffle", ({ b, node, inputs, dy }) => {
  const r = node.attrs.factor as number;
  const [n, c, h, w] = inputs[0].shape;
  const co = c / (r * r);
  const split = b.reshape(dy, [n, co, h, r, w, r]);
  return [b.reshape(b.permute(split, [0, 1, 3, 5, 2, 4]), [n, c, h, w])];
});

// The same op on dy with the same stream and p draws the same mask (the run's seed is shared), and
// the mask times 1/(1-p) is exactly the derivative.
for (const op of ["dropout", "dropPath"]) {
  registerGradient(op, ({ b, node, dy }) => [b.op(op, [dy], { ...node.attrs })]);
}
