// The op catalogue: one entry per op name, with its shape/dtype rule and its FLOP count. Every
// layer that needs to know about an op (tracer, autodiff, executors, lowering) keys on this name.

import { ShapeError } from "../errors.ts";
import type { Attrs, DType, Shape, TensorType } from "../types.ts";

export interface OpSpec {
  readonly name: string;
  /** Number of inputs; "variadic" for concat. Optional trailing inputs are allowed up to `maxInputs`. */
  readonly inputs: number | "variadic";
  readonly maxInputs?: number;
  /** Output type from input types and attrs; throws ShapeError (without location) on bad input. */
  infer(inputs: readonly TensorType[], attrs: Attrs): TensorType;
  /** Floating-point operations for one execution (multiply-add = 2). */
  flops(inputs: readonly TensorType[], out: TensorType, attrs: Attrs): number;
  /** Pointwise ops (with broadcasting): candidates for generic elementwise fusion. */
  readonly elementwise?: boolean;
}

const specs = new Map<string, OpSpec>();

export function defineOp(spec: OpSpec): OpSpec {
  if (specs.has(spec.name)) throw new Error(`op ${spec.name} defined twice`);
  specs.set(spec.name, spec);
  return spec;
}

export function opSpec(name: string): OpSpec {
  const s = specs.get(name);
  if (!s) throw new Error(`unknown op '${name}'`);
  return s;
}

export function hasOp(name: string): boolean {
  return specs.has(name);
}

export function allOps(): readonly OpSpec[] {
  return [...specs.values()];
}

// ---- helpers shared by the op definitions ----

export function fail(message: string): never {
  throw new ShapeError(message);
}

export function normAxis(axis: number, rank: number, what = "axis"): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) fail(`${what} ${axis} is out of range for rank ${rank}`);
  return a;
}

export function sameDType(op: string, inputs: readonly TensorType[]): DType {
  const d = inputs[0].dtype;
  for (const t of inputs) {
    if (t.dtype !== d) fail(`${op}: dtypes ${inputs.map((i) => i.dtype).join(" and ")} differ (cast one first)`);
  }
  return d;
}

export function floatOnly(op: string, t: TensorType): void {
  if (t.dtype === "i32") fail(`${op} needs a floating-point tensor, got i32`);
}

/** numpy-style broadcasting of two shapes, right-aligned. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      fail(`${op}: shapes [${a.join(",")}] and [${b.join(",")}] do not broadcast (dim ${da} vs ${db})`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

export function attrNumbers(attrs: Attrs, key: string): readonly number[] {
  const v = attrs[key];
  if (!Array.isArray(v)) throw new Error(`attr ${key} must be a number list`);
  return v as readonly number[];
}

export function attrNumber(attrs: Attrs, key: string): number {
  const v = attrs[key];
  if (typeof v !== "number") throw new Error(`attr ${key} must be a number`);
  return v;
}
