// Nodes with no inputs: graph inputs, parameters and constants.

import { DTYPES, type DType, numel } from "../types.ts";
import { attrNumbers, defineOp, fail } from "./registry.ts";

function declared(attrs: { [k: string]: unknown }) {
  const shape = attrNumbers(attrs as never, "shape");
  const dtype = attrs.dtype as DType;
  if (!DTYPES.includes(dtype)) fail(`unsupported dtype '${String(attrs.dtype)}' (use f32, bf16 or i32)`);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) fail(`bad shape [${shape.join(",")}]`);
  return { shape, dtype };
}

/** A named graph input (attrs: name, shape, dtype). */
defineOp({ name: "input", inputs: 0, infer: (_i, attrs) => declared(attrs), flops: () => 0 });

/** A named parameter (attrs: name, shape, dtype, init). Its memory exists only in executors. */
defineOp({ name: "param", inputs: 0, infer: (_i, attrs) => declared(attrs), flops: () => 0 });

/** A constant (attrs: shape, dtype, data: Float32Array or Int32Array of numel or 1 element). */
defineOp({
  name: "const",
  inputs: 0,
  infer(_i, attrs) {
    const t = declared(attrs);
    const data = attrs.data as Float32Array | Int32Array;
    if (data.length !== 1 && data.length !== numel(t.shape))
      fail(`const: ${data.length} values for shape [${t.shape.join(",")}]`);
    return t;
  },
  flops: () => 0,
});
