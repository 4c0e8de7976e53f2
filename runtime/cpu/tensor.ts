// Host tensors of the CPU executor: row-major, f32 storage for f32 and bf16 (bf16 values are
// f32 numbers rounded to bf16), Int32Array for i32.

import { type DType, formatShape, numel, type Shape } from "../../compiler/ir/index.ts";

export type HostData = Float32Array | Int32Array;

export interface HostTensor {
  readonly shape: Shape;
  readonly dtype: DType;
  readonly data: HostData;
}

export function hostTensor(shape: Shape, dtype: DType, data?: HostData | ArrayLike<number>): HostTensor {
  const n = numel(shape);
  let d: HostData;
  if (data === undefined) d = dtype === "i32" ? new Int32Array(n) : new Float32Array(n);
  else if (dtype === "i32") d = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
  else d = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  if (d.length !== n) throw new Error(`tensor data has ${d.length} values for shape ${formatShape(shape)}`);
  return { shape: [...shape], dtype, data: d };
}

/** Row-major strides. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Strides for reading `from` as if broadcast to `to` (0 on broadcast dims). */
export function broadcastStrides(from: Shape, to: Shape): number[] {
  const s = stridesOf(from);
  const off = to.length - from.length;
  return to.map((_, i) => (i < off || from[i - off] === 1 ? 0 : s[i - off]));
}
