// Gradients of the pointwise ops. Binary ops broadcast, so each operand's gradient is summed back
// to its own shape (Builder.sumTo). Conventions at non-differentiable points (README):
// abs, sqrt, rsqrt and log have gradient 0 at x = 0; relu has 0 at 0; maximum/minimum split the
// gradient evenly between tied operands (as torch.maximum); comparisons have no gradient.

import type { Builder } from "../builder.ts";
import { type GradArgs, registerGradient } from "../registry.ts";

const SQRT_2PI = Math.sqrt(2 * Math.PI);

function unaryRule(op: string, dx: (b: Builder, x: number, y: number, dy: number, a: GradArgs) => number): void {
  registerGradient(op, (a) => [dx(a.b, a.inputs[0].id, a.node.id, a.dy, a)]);
}

unaryRule("neg", (b, _x, _y, dy) => b.neg(dy));
unaryRule("exp", (b, _x, y, dy) => b.mul(dy, y));
unaryRule("log", (b, x, _y, dy) => b.zeroWhere(b.op("eq", [x, b.scalar(0, b.dtype(x))]), b.div(dy, x)));
// d sqrt(x) = 1 / (2 sqrt(x)); y = 0 exactly when x = 0 (or underflows), where it is defined as 0.
unaryRule("sqrt", (b, _x, y, dy) => b.zeroWhere(b.op("eq", [y, b.scalar(0, b.dtype(y))]), b.div(b.scale(dy, 0.5), y)));
// d x^-1/2 = -1/2 x^-3/2 = -1/2 * y / x.
unaryRule("rsqrt", (b, x, y, dy) => b.zeroWhere(b.op("eq", [x, b.scalar(0, b.dtype(x))]), b.div(b.mul(b.scale(dy, -0.5), y), x)));
unaryRule("abs", (b, x, _y, dy) => {
  const zero = b.scalar(0, b.dtype(x));
  const sign = b.sub(b.op("gt", [x, zero]), b.op("lt", [x, zero]));
  return b.mul(dy, sign);
});
unaryRule("sigmoid", (b, _x, y, dy) => b.mul(dy, b.mul(y, b.sub(b.scalar(1, b.dtype(y)), y))));
unaryRule("relu", (b, x, _y, dy) => b.mul(dy, b.op("gt", [x, b.scalar(0, b.dtype(x))])));
unaryRule("tanh", (b, _x, y, dy) => b.mul(dy, b.sub(b.scalar(1, b.dtype(y)), b.mul(y, y))));
// erf'(x) = 2/sqrt(pi) exp(-x^2)
unaryRule("erf", (b, x, _y, dy) => b.mul(dy, b.scale(b.op("exp", [b.neg(b.mul(x, x))]), 2 / Math.sqrt(Math.PI))));
unaryRule("gelu", (b, x, _y, dy, a) => {
  const dt = b.dtype(x);
  const one = b.scalar(1, dt);
  if (a.node.attrs.approximate === "tanh") {
    // y = x/2 (1 + t), t = tanh(u), u = k (x + c x^3): y' = (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 c x^2)
    const k = Math.sqrt(2 / Math.PI);
    const c = 0.044715;
    const x2 = b.mul(x, x);
    const u = b.scale(b.add(x, b.scale(b.mul(x2, x), c)), k);
    const t = b.op("tanh", [u]);
    const du = b.scale(b.add(one, b.scale(x2, 3 * c)), k);
    const d = b.add(b.scale(b.add(one, t), 0.5), b.mul(b.scale(x, 0.5), b.mul(b.sub(one, b.mul(t, t)), du)));
    return b.mul(dy, d);
  }
  // y = x Phi(x): y' = Phi(x) + x phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, phi(x) = exp(-x^2/2) / sqrt(2 pi)
  const cdf = b.scale(b.add(one, b.op("erf", [b.scale(x, Math.SQRT1_2)])), 0.5);
  const pdf = b.scale(b.op("exp", [b.scale(b.mul(x, x), -0.5)]), 1 / SQRT_2PI);
  return b.mul(dy, b.add(cdf, b.mul(x, pdf)));
});

function binaryRule(
  op: string,
  grads: (b: Builder, x: number, y: number, out: number, dy: number, needs: readonly boolean[]) => [number?, number?],
) {
  registerGradient(op, ({ b, node, inputs, dy, needs }) => {
    const [x, y] = inputs;
    const [dx, dyy] = grads(b, x.id, y.id, node.id, dy, needs);
    return [
      needs[0] && dx !== undefined ? b.sumTo(dx, x.shape) : undefined,
      needs[1] && dyy !== undefined ? b.sumTo(dyy, y.shape) : undefined,
    ];
  });
}

binaryRule("add", (_b, _x, _y, _o, dy) => [dy, dy]);
binaryRule("sub", (b, _x, _y, _o, dy, n) => [dy, n[1] ? b.neg(dy) : undefined]);
binaryRule("mul", (b, x, y, _o, dy, n) => [n[0] ? b.mul(dy, y) : undefined, n[1] ? b.mul(dy, x) : undefined]);
// d(x/y)/dy = -x/y^2 = -out/y
binaryRule("div", (b, _x, y, out, dy, n) => [
  n[0] ? b.div(dy, y) : undefined,
  n[1] ? b.neg(b.div(b.mul(dy, out), y)) : undefined,
]);
// torch's conventions: d/dx is 0 where the exponent is 0; d/dy is 0 where x = 0 and y >= 0.
binaryRule("pow", (b, x, y, out, dy, n) => {
  const dt = b.dtype(x);
  const zero = b.scalar(0, dt);
  const dx = n[0]
    ? b.zeroWhere(b.op("eq", [y, zero]), b.mul(dy, b.mul(y, b.op("pow", [x, b.sub(y, b.scalar(1, dt))]))))
    : undefined;
  const dyy = n[1]
    ? b.zeroWhere(b.mul(b.op("eq", [x, zero]), b.op("ge", [y, zero])), b.mul(dy, b.mul(out, b.op("log", [x]))))
    : undefined;
  return [dx, dyy];
});
// Ties split the gradient evenly: the mask is 1 where x wins, 1/2 where tied, 0 where it loses.
for (const [op, wins, loses] of [
  ["maximum", "gt", "lt"],
  ["minimum", "lt", "gt"],
] as const) {
  binaryRule(op, (b, x, y, _o, dy, n) => {
    const half = b.scale(b.op("eq", [x, y]), 0.5);
    return [
      n[0] ? b.mul(dy, b.add(b.op(wins, [x, y]), half)) : undefined,
      n[1] ? b.mul(dy, b.add(b.op(loses, [x, y]), half)) : undefined,
    ];
  });
}
// Comparisons are piecewise constant: no gradient to either side.
for (const op of ["eq", "lt", "le", "gt", "ge"]) registerGradient(op, () => [undefined, undefined]);

registerGradient("where", ({ b, inputs, dy, needs }) => {
  const [c, x, y] = inputs;
  const zero = b.scalar(0, b.dtype(dy));
  return [
    undefined,
    needs[1] ? b.sumTo(b.where(c.id, dy, zero), x.shape) : undefined,
    needs[2] ? b.sumTo(b.where(c.id, zero, dy), y.shape) : undefined,
  ];
});

// A cast's gradient casts back (bf16 compute -> f32 master gradients); nothing flows through i32.
registerGradient("cast", ({ b, node, inputs, dy }) => {
  const x = inputs[0];
  if (x.dtype === "i32" || node.dtype === "i32") return [undefined];
  return [b.cast(dy, x.dtype)];
});
