// Pointwise ops with numpy broadcasting. Each op's loop is written out (a switch per row, not a
// function call per element), so the JIT compiles every loop for one operation: a shared loop
// calling a per-op function is several times slower once it has seen a few ops.

import { erf, gelu, sigmoid } from "../math.ts";
import { broadcastStrides, type HostData, type HostTensor, hostTensor, stridesOf } from "../tensor.ts";
import { registerKernel } from "./registry.ts";
import { rowPlan } from "./rows.ts";

/** pow with C's special cases (torch follows C): pow(1, y) = 1 and pow(-1, +-inf) = 1, where JS gives NaN. */
export function powC(a: number, b: number): number {
  if (a === 1 || b === 0) return 1;
  if (a === -1 && (b === Number.POSITIVE_INFINITY || b === Number.NEGATIVE_INFINITY)) return 1;
  return a ** b;
}

function unaryLoop(op: string, approximate: string, x: HostData, o: HostData): void {
  const n = o.length;
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) o[i] = -x[i];
      return;
    case "exp":
      for (let i = 0; i < n; i++) o[i] = Math.exp(x[i]);
      return;
    case "log":
      for (let i = 0; i < n; i++) o[i] = Math.log(x[i]);
      return;
    case "sqrt":
      for (let i = 0; i < n; i++) o[i] = Math.sqrt(x[i]);
      return;
    case "rsqrt":
      for (let i = 0; i < n; i++) o[i] = 1 / Math.sqrt(x[i]);
      return;
    case "abs":
      for (let i = 0; i < n; i++) o[i] = Math.abs(x[i]);
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) o[i] = sigmoid(x[i]);
      return;
    case "relu":
      // x < 0 ? 0 : x keeps NaN and -0, as torch's relu does (Math.max(x, 0) would turn -0 into 0).
      // biome-ignore lint/complexity/useMathMinMax: the sign of zero matters here
      for (let i = 0; i < n; i++) o[i] = x[i] < 0 ? 0 : x[i];
      return;
    case "tanh":
      for (let i = 0; i < n; i++) o[i] = Math.tanh(x[i]);
      return;
    case "erf":
      for (let i = 0; i < n; i++) o[i] = erf(x[i]);
      return;
    case "gelu":
      for (let i = 0; i < n; i++) o[i] = gelu(x[i], approximate);
      return;
  }
  throw new Error(`no unary loop for ${op}`);
}

for (const op of ["neg", "exp", "log", "sqrt", "rsqrt", "abs", "sigmoid", "relu", "tanh", "erf", "gelu"]) {
  registerKernel(op, (node, [x]) => {
    const out = hostTensor(node.shape, node.dtype);
    unaryLoop(op, String(node.attrs.approximate ?? "none"), x.data, out.data);
    return out;
  });
}

/** o[oi + t] = a[ai + t*sa] (op) b[bi + t*sb] for t < len. Comparisons give 1 or 0. */
function binaryRow(
  op: string,
  o: HostData,
  oi: number,
  a: HostData,
  ai: number,
  sa: number,
  b: HostData,
  bi: number,
  sb: number,
  len: number,
) {
  switch (op) {
    case "add":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] + b[bi + t * sb];
      return;
    case "sub":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] - b[bi + t * sb];
      return;
    case "mul":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] * b[bi + t * sb];
      return;
    case "div":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] / b[bi + t * sb];
      return;
    case "pow":
      for (let t = 0; t < len; t++) o[oi + t] = powC(a[ai + t * sa], b[bi + t * sb]);
      return;
    case "maximum":
      // NaN wins, as torch.maximum.
      for (let t = 0; t < len; t++) {
        const x = a[ai + t * sa];
        const y = b[bi + t * sb];
        o[oi + t] = x > y || Number.isNaN(x) ? x : y;
      }
      return;
    case "minimum":
      for (let t = 0; t < len; t++) {
        const x = a[ai + t * sa];
        const y = b[bi + t * sb];
        o[oi + t] = x < y || Number.isNaN(x) ? x : y;
      }
      return;
    case "eq":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] === b[bi + t * sb] ? 1 : 0;
      return;
    case "lt":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] < b[bi + t * sb] ? 1 : 0;
      return;
    case "le":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] <= b[bi + t * sb] ? 1 : 0;
      return;
    case "gt":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] > b[bi + t * sb] ? 1 : 0;
      return;
    case "ge":
      for (let t = 0; t < len; t++) o[oi + t] = a[ai + t * sa] >= b[bi + t * sb] ? 1 : 0;
      return;
  }
  throw new Error(`no binary loop for ${op}`);
}

for (const op of ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "lt", "le", "gt", "ge"]) {
  registerKernel(op, (node, [a, b]) => {
    const out = hostTensor(node.shape, node.dtype);
    const plan = rowPlan(node.shape, [
      stridesOf(node.shape),
      broadcastStrides(a.shape, node.shape),
      broadcastStrides(b.shape, node.shape),
    ]);
    const [, sa, sb] = plan.inner;
    const [os, as, bs] = plan.starts;
    for (let r = 0; r < plan.rows; r++) binaryRow(op, out.data, os[r], a.data, as[r], sa, b.data, bs[r], sb, plan.len);
    return out;
  });
}

/** Anything broadcast to `shape`, as rows: fn(outStart, inputStarts..., len, inputSteps...). */
export function broadcastRows(shape: readonly number[], inputs: readonly HostTensor[]) {
  return rowPlan(shape, [stridesOf(shape), ...inputs.map((t) => broadcastStrides(t.shape, shape))]);
}

registerKernel("where", (node, [c, a, b]) => {
  const out = hostTensor(node.shape, node.dtype);
  const plan = broadcastRows(node.shape, [c, a, b]);
  const [, sc, sa, sb] = plan.inner;
  const [os, cs, as, bs] = plan.starts;
  const [cd, ad, bd, od] = [c.data, a.data, b.data, out.data];
  for (let r = 0; r < plan.rows; r++) {
    const [o, ci, ai, bi] = [os[r], cs[r], as[r], bs[r]];
    for (let t = 0; t < plan.len; t++) od[o + t] = cd[ci + t * sc] !== 0 ? ad[ai + t * sa] : bd[bi + t * sb];
  }
  return out;
});

registerKernel("cast", (node, [x]) => {
  if (node.dtype === "i32") {
    const out = hostTensor(node.shape, "i32");
    for (let i = 0; i < x.data.length; i++) out.data[i] = Math.trunc(x.data[i]);
    return out;
  }
  return hostTensor(node.shape, node.dtype, Float32Array.from(x.data));
});
