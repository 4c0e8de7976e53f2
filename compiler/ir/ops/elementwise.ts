// Pointwise ops. Binary ops broadcast numpy-style; operands must share a dtype (the DSL's types
// reject mixes before tracing, this is the runtime guard).

import { DTYPES, type DType, numel, type TensorType } from "../types.ts";
import { broadcastShapes, defineOp, fail, floatOnly, sameDType } from "./registry.ts";

export const UNARY_OPS = ["neg", "exp", "log", "sqrt", "rsqrt", "abs", "sigmoid", "relu", "tanh", "erf", "gelu"] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];

export const BINARY_OPS = ["add", "sub", "mul", "div", "pow", "maximum", "minimum"] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

/** Comparisons produce 1 or 0 in the operands' dtype, so masks compose with mul/where. */
export const COMPARE_OPS = ["eq", "lt", "le", "gt", "ge"] as const;
export type CompareOp = (typeof COMPARE_OPS)[number];

const elementFlops = (_i: readonly TensorType[], out: TensorType) => numel(out.shape);

for (const name of UNARY_OPS) {
  defineOp({
    name,
    inputs: 1,
    elementwise: true,
    infer([x], attrs) {
      if (name !== "neg" && name !== "abs" && name !== "relu") floatOnly(name, x);
      if (name === "gelu" && attrs.approximate !== "none" && attrs.approximate !== "tanh") {
        fail(`gelu: approximate must be 'none' or 'tanh'`);
      }
      return x;
    },
    flops: elementFlops,
  });
}

for (const name of [...BINARY_OPS, ...COMPARE_OPS]) {
  defineOp({
    name,
    inputs: 2,
    elementwise: true,
    infer([a, b]) {
      const dtype = sameDType(name, [a, b]);
      return { shape: broadcastShapes(name, a.shape, b.shape), dtype };
    },
    flops: elementFlops,
  });
}

/** where(cond, a, b): cond is nonzero -> a, else b; all three broadcast together. */
defineOp({
  name: "where",
  inputs: 3,
  elementwise: true,
  infer([c, a, b]) {
    const dtype = sameDType("where", [a, b]);
    const ab = broadcastShapes("where", a.shape, b.shape);
    return { shape: broadcastShapes("where", c.shape, ab), dtype };
  },
  flops: elementFlops,
});

defineOp({
  name: "cast",
  inputs: 1,
  elementwise: true,
  infer([x], attrs) {
    const dtype = attrs.dtype as DType;
    if (!DTYPES.includes(dtype)) fail(`cast: unsupported dtype '${String(attrs.dtype)}' (use f32, bf16 or i32)`);
    return { shape: x.shape, dtype };
  },
  flops: () => 0,
});
