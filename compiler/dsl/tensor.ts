// Tensor<Shape, DType>: a symbolic value in the traced graph. Methods record ops; their types prove
// what TypeScript can (ranks, equal dims, broadcasting, dtypes) and the tracer checks the rest.

import { type Attrs, type Node, ShapeError, UserError } from "../ir/index.ts";
import { callerLocation, currentTrace, type Trace } from "../trace/index.ts";
import type {
  Broadcast,
  CheckBroadcast,
  CheckMatmul,
  CheckPermute,
  DType,
  Matmul,
  Permute,
  Reduce,
  Reshaped,
  Shape,
  ShapeOf,
  SwapLast2,
  Transpose,
} from "./shape-types.ts";

// biome-ignore lint/suspicious/noExplicitAny: a tensor of any shape, for operand constraints
export type AnyTensor<D extends DType = DType> = Tensor<any, D>;
type Axes = number | readonly number[];
type ReduceShape<S extends Shape, A, K extends boolean> = A extends number ? Reduce<S, A, K> : Shape;

/** The shape and dtype of a tensor type (methods take `this: T` so Tensor stays covariant). */
type Sh<T extends AnyTensor> = T["shape"];
type Dt<T extends AnyTensor> = T["dtype"];
type Same<T extends AnyTensor> = Tensor<Sh<T>, Dt<T>>;

export class Tensor<S extends Shape = Shape, D extends DType = DType> {
  readonly shape: S;
  readonly dtype: D;
  readonly #id: number;
  readonly #trace: Trace | undefined;

  /** @internal Tensors come from model inputs, parameters and ops, not from user code. */
  constructor(id: number, shape: S, dtype: D, trace: Trace | undefined) {
    this.#id = id;
    this.shape = shape;
    this.dtype = dtype;
    this.#trace = trace;
  }

  /** The node id of this value in the trace that is running. */
  get id(): number {
    if (this.#trace !== currentTrace()) {
      throw new UserError("a tensor from one trace was used in another (keep tensors inside forward())");
    }
    return this.#id;
  }

  get rank(): number {
    return this.shape.length;
  }

  // ---- pointwise ----
  neg<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "neg");
  }
  exp<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "exp");
  }
  log<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "log");
  }
  sqrt<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "sqrt");
  }
  rsqrt<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "rsqrt");
  }
  abs<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "abs");
  }
  sigmoid<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "sigmoid");
  }
  relu<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "relu");
  }
  tanh<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "tanh");
  }
  erf<T extends AnyTensor>(this: T): Same<T> {
    return unary(this, "erf");
  }
  /** GELU; `approximate: "tanh"` is the tanh form (torch's approximate='tanh'). */
  gelu<T extends AnyTensor>(this: T, approximate: "none" | "tanh" = "none"): Same<T> {
    return unary(this, "gelu", { approximate });
  }

  add<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "add", other);
  }
  sub<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "sub", other);
  }
  mul<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "mul", other);
  }
  div<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "div", other);
  }
  pow<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "pow", other);
  }
  maximum<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "maximum", other);
  }
  minimum<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "minimum", other);
  }
  /** 1 where equal, else 0 (same dtype), so masks compose with mul and where. */
  eq<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "eq", other);
  }
  lt<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "lt", other);
  }
  le<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "le", other);
  }
  gt<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "gt", other);
  }
  ge<T extends AnyTensor, B extends Shape = Sh<T>>(
    this: T,
    other: number | (Tensor<B, Dt<T>> & CheckBroadcast<Sh<T>, B>),
  ): Tensor<ShapeOf<Broadcast<Sh<T>, B>>, Dt<T>> {
    return binary(this, "ge", other);
  }
  clamp<T extends AnyTensor>(this: T, min?: number, max?: number): Same<T> {
    let t: AnyTensor = this;
    if (min !== undefined) t = binary(t, "maximum", min);
    if (max !== undefined) t = binary(t, "minimum", max);
    return t as Same<T>;
  }

  // ---- contractions ----
  /** Batched matrix product over the last two dims; batch dims broadcast. */
  matmul<T extends AnyTensor, B extends Shape>(
    this: T,
    other: Tensor<B, Dt<T>> & CheckMatmul<Sh<T>, B>,
  ): Tensor<ShapeOf<Matmul<Sh<T>, B>>, Dt<T>> {
    return emit(this, "matmul", [this, other as AnyTensor], {});
  }
  /** The last two dims swapped (PyTorch's `.mT`); matmul lowering folds it into the GEMM. */
  get mT(): Tensor<SwapLast2<S>, D> {
    const r = this.rank;
    if (r < 2) throw traceError(`.mT needs rank >= 2, got rank ${r}`);
    const perm = [...Array(r).keys()];
    [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
    return emit(this, "permute", [this], { perm });
  }

  // ---- reductions ----
  sum<T extends AnyTensor, const A extends Axes, const K extends boolean = false>(
    this: T,
    axes: A,
    keepdim?: K,
  ): Tensor<ReduceShape<Sh<T>, A, K>, Dt<T>> {
    return reduce(this, "sum", axes, keepdim);
  }
  mean<T extends AnyTensor, const A extends Axes, const K extends boolean = false>(
    this: T,
    axes: A,
    keepdim?: K,
  ): Tensor<ReduceShape<Sh<T>, A, K>, Dt<T>> {
    return reduce(this, "mean", axes, keepdim);
  }
  max<T extends AnyTensor, const A extends Axes, const K extends boolean = false>(
    this: T,
    axes: A,
    keepdim?: K,
  ): Tensor<ReduceShape<Sh<T>, A, K>, Dt<T>> {
    return reduce(this, "max", axes, keepdim);
  }
  softmax<T extends AnyTensor>(this: T, axis: number): Same<T> {
    return emit(this, "softmax", [this], { axis });
  }

  // ---- layout ----
  /** New shape with the same element count (one dim may be -1); checked when tracing. */
  reshape<const R extends Shape>(shape: R): Tensor<Reshaped<R>, D> {
    return emit(this, "reshape", [this], { shape: [...shape] });
  }
  /** Merges dims start..end (inclusive) into one. */
  flatten(start = 0, end = -1): Tensor<Shape, D> {
    const r = this.rank;
    const s = start < 0 ? start + r : start;
    const e = end < 0 ? end + r : end;
    const dims = this.shape as readonly number[];
    const merged = dims.slice(s, e + 1).reduce((a, b) => a * b, 1);
    return this.reshape([...dims.slice(0, s), merged, ...dims.slice(e + 1)]);
  }
  unsqueeze(axis: number): Tensor<Shape, D> {
    const dims = [...(this.shape as readonly number[])];
    dims.splice(axis < 0 ? axis + dims.length + 1 : axis, 0, 1);
    return this.reshape(dims);
  }
  squeeze(axis: number): Tensor<Shape, D> {
    const dims = [...(this.shape as readonly number[])];
    const a = axis < 0 ? axis + dims.length : axis;
    if (dims[a] !== 1) throw traceError(`squeeze: dim ${axis} has size ${dims[a]}, not 1`);
    dims.splice(a, 1);
    return this.reshape(dims);
  }
  permute<T extends AnyTensor, const P extends readonly number[]>(
    this: T,
    perm: P & CheckPermute<Sh<T>, P>,
  ): Tensor<ShapeOf<Permute<Sh<T>, P>>, Dt<T>> {
    return emit(this, "permute", [this], { perm: [...(perm as readonly number[])] });
  }
  transpose<T extends AnyTensor, const A extends number, const B extends number>(
    this: T,
    a: A,
    b: B,
  ): Tensor<Transpose<Sh<T>, A, B>, Dt<T>> {
    const r = this.rank;
    const perm = [...Array(r).keys()];
    const x = a < 0 ? a + r : a;
    const y = b < 0 ? b + r : b;
    [perm[x], perm[y]] = [perm[y], perm[x]];
    return emit(this, "permute", [this], { perm });
  }
  /** Cyclic shift along axes (torch.roll): element i moves to i + shift. */
  roll<T extends AnyTensor>(this: T, shifts: number | readonly number[], axes: number | readonly number[]): Same<T> {
    return emit(this, "roll", [this], { shifts: list(shifts), axes: list(axes) });
  }
  /** x[start:end:step] along one axis (Python rules: negative indices count from the end, bounds clamp). */
  slice(axis: number, start: number, end?: number, step = 1): Tensor<Shape, D> {
    const dims = this.shape as readonly number[];
    const r = dims.length;
    const a = axis < 0 ? axis + r : axis;
    if (a < 0 || a >= r) throw traceError(`slice: axis ${axis} is out of range for rank ${r}`);
    const d = dims[a];
    const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + d : i, 0), d);
    const s = clamp(start);
    const e = Math.max(clamp(end ?? d), s);
    const starts = dims.map((_, i) => (i === a ? s : 0));
    const ends = dims.map((n, i) => (i === a ? e : n));
    const steps = dims.map((_, i) => (i === a ? step : 1));
    return emit(this, "slice", [this], { starts, ends, steps });
  }
  /** Constant padding; `pads[i] = [before, after]` for each axis (numpy/jax order, all axes). */
  pad(pads: readonly (readonly [number, number])[], value = 0): Tensor<Shape, D> {
    return emit(this, "pad", [this], { pads: pads.flatMap((p) => [p[0], p[1]]), value });
  }
  /** numpy.take: rows of this tensor along `axis`, picked by an i32 index tensor of any shape. */
  take(index: Tensor<Shape, "i32">, axis = 0): Tensor<Shape, D> {
    return emit(this, "take", [this, index], { axis });
  }
  broadcastTo<const R extends Shape>(shape: R): Tensor<[...R], D> {
    return emit(this, "broadcastTo", [this], { shape: [...shape] });
  }
  cast<T extends AnyTensor, const To extends DType>(this: T, dtype: To): Tensor<Sh<T>, To> {
    if ((dtype as DType) === (this.dtype as DType)) return this as unknown as Tensor<Sh<T>, To>;
    return emit(this, "cast", [this], { dtype });
  }
}

function list(v: number | readonly number[]): number[] {
  return typeof v === "number" ? [v] : [...v];
}

/** A shape error raised by DSL code itself, located at the user's line. */
export function traceError(message: string): ShapeError {
  return new ShapeError(message, callerLocation());
}

/** Wraps a recorded node as a Tensor of the running trace. */
export function tensorOf<S extends Shape, D extends DType>(node: Node, trace: Trace = currentTrace()): Tensor<S, D> {
  return new Tensor(node.id, node.shape as unknown as S, node.dtype as D, trace);
}

/** Records `op` on tensor inputs; the result's shape comes from the op's rule (checked here). */
// biome-ignore lint/suspicious/noExplicitAny: result type is given by the caller's signature
export function emit<R = any>(_self: AnyTensor | undefined, op: string, inputs: readonly AnyTensor[], attrs: Attrs): R {
  const trace = currentTrace();
  const node = trace.emit(
    op,
    inputs.map((t) => t.id),
    attrs,
  );
  return tensorOf(node, trace) as R;
}

/** A scalar constant in `dtype`, broadcastable to anything. */
export function scalar<D extends DType>(value: number, dtype: D): Tensor<[], D> {
  const data = dtype === "i32" ? Int32Array.of(value) : Float32Array.of(value);
  return emit(undefined, "const", [], { shape: [], dtype, data });
}

// biome-ignore lint/suspicious/noExplicitAny: shape is given by the public method's signature
function unary(x: AnyTensor, op: string, attrs: Attrs = {}): any {
  return emit(x, op, [x], attrs);
}

// biome-ignore lint/suspicious/noExplicitAny: shape is given by the public method's signature
function binary(x: AnyTensor, op: string, other: number | AnyTensor): any {
  const y = typeof other === "number" ? scalar(other, x.dtype) : other;
  return emit(x, op, [x, y], {});
}

// biome-ignore lint/suspicious/noExplicitAny: shape is given by the public method's signature
function reduce(x: AnyTensor, op: string, axes: Axes, keepdim: boolean | undefined): any {
  return emit(x, op, [x], { axes: list(axes), keepdims: keepdim === true });
}
