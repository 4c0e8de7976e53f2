// Functional ops (PyTorch's torch.nn.functional): the ones that take several tensors or are
// composed from simpler ops. Losses and l2-normalise are compositions, so autodiff and the
// kernels only see primitives.

import { UserError } from "../ir/index.ts";
import { currentTrace } from "../trace/index.ts";
import { isTraining } from "./module.ts";
import type { Broadcast, CheckBroadcast, DType, FloatDType, Shape, ShapeOf } from "./shape-types.ts";
import { type AnyTensor, emit, scalar, type Tensor, traceError } from "./tensor.ts";

/** Joins tensors along an existing axis. */
export function concat<D extends DType>(tensors: readonly Tensor<Shape, D>[], axis: number): Tensor<Shape, D> {
  if (tensors.length === 0) throw traceError("concat: no tensors given");
  return emit(undefined, "concat", tensors, { axis });
}

/** cond != 0 ? a : b, all three broadcast together. */
export function where<SA extends Shape, SB extends Shape, D extends DType>(
  cond: AnyTensor,
  a: Tensor<SA, D>,
  b: Tensor<SB, D> & CheckBroadcast<SA, SB>,
): Tensor<ShapeOf<Broadcast<SA, SB>>, D> {
  return emit(undefined, "where", [cond, a, b as AnyTensor], {});
}

/** A constant tensor (a relative-position index table, a shift mask, ...). */
export function constant<const S extends Shape, D extends DType = "f32">(
  data: ArrayLike<number>,
  shape: S,
  dtype: D = "f32" as D,
): Tensor<[...S], D> {
  const values = dtype === "i32" ? Int32Array.from(data) : Float32Array.from(data);
  return emit(undefined, "const", [], { shape: [...shape], dtype, data: values });
}

export function full<const S extends Shape, D extends DType = "f32">(
  shape: S,
  value: number,
  dtype: D = "f32" as D,
): Tensor<[...S], D> {
  return scalar(value, dtype).broadcastTo(shape);
}

/** 0, 1, ..., n-1. */
export function arange<D extends DType = "i32">(n: number, dtype: D = "i32" as D): Tensor<[number], D> {
  return constant(
    Array.from({ length: n }, (_, i) => i),
    [n],
    dtype,
  );
}

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  dilation?: number | readonly [number, number];
  groups?: number;
}

const pair = (v: number | readonly [number, number] | undefined, d: number): number[] =>
  v === undefined ? [d, d] : typeof v === "number" ? [v, v] : [v[0], v[1]];

/** 2-D convolution, NCHW; weight [Cout, Cin/groups, kh, kw]. Output size is checked when tracing. */
export function conv2d<N extends number, Cout extends number, D extends FloatDType>(
  x: Tensor<readonly [N, number, number, number], D>,
  weight: Tensor<readonly [Cout, number, number, number], D>,
  bias?: Tensor<readonly [Cout], D>,
  options: Conv2dOptions = {},
): Tensor<[N, Cout, number, number], D> {
  const attrs = {
    stride: pair(options.stride, 1),
    padding: pair(options.padding, 0),
    dilation: pair(options.dilation, 1),
    groups: options.groups ?? 1,
  };
  return emit(undefined, "conv2d", bias ? [x, weight, bias] : [x, weight], attrs);
}

/** x @ weight^T + bias, weight [out, in] as in torch.nn.Linear. */
export function linear<D extends FloatDType>(
  x: Tensor<Shape, D>,
  weight: Tensor<Shape, D>,
  bias?: Tensor<Shape, D>,
): Tensor<Shape, D> {
  const y: Tensor<Shape, D> = x.matmul(weight.mT);
  return bias ? y.add(bias) : y;
}

/** Normalises over the last dim, then scales and shifts by weight/bias when given. */
export function layerNorm<S extends Shape, D extends FloatDType>(
  x: Tensor<S, D>,
  weight?: Tensor<Shape, D>,
  bias?: Tensor<Shape, D>,
  eps = 1e-5,
): Tensor<S, D> {
  const ins = [x, weight, bias].filter((t): t is Tensor<Shape, D> => t !== undefined);
  if (bias && !weight) throw traceError("layerNorm: a bias needs a weight");
  return emit(undefined, "layerNorm", ins, { eps });
}

/** GroupNorm over [N, C, ...] with C split into `groups`. */
export function groupNorm<S extends Shape, D extends FloatDType>(
  x: Tensor<S, D>,
  groups: number,
  weight?: Tensor<Shape, D>,
  bias?: Tensor<Shape, D>,
  eps = 1e-5,
): Tensor<S, D> {
  const ins = [x, weight, bias].filter((t): t is Tensor<Shape, D> => t !== undefined);
  if (bias && !weight) throw traceError("groupNorm: a bias needs a weight");
  return emit(undefined, "groupNorm", ins, { groups, eps });
}

/** L2 normalisation along `axis`: x / max(||x||, eps), as torch.nn.functional.normalize. */
export function normalize<S extends Shape, D extends FloatDType>(x: Tensor<S, D>, axis = -1, eps = 1e-12): Tensor<S, D> {
  const t = x as Tensor<Shape, D>;
  return t.div(t.mul(t).sum(axis, true).sqrt().maximum(eps)) as Tensor<S, D>;
}

export interface UpsampleOptions {
  /** Output [H, W]; or give `scale`. */
  size?: readonly [number, number];
  scale?: number;
  mode?: "nearest" | "bilinear";
  /** Bilinear only (torch's align_corners); default false. */
  alignCorners?: boolean;
}

/** Resizes an NCHW map (torch.nn.functional.interpolate for 2-D). */
export function upsample<N extends number, C extends number, D extends FloatDType>(
  x: Tensor<readonly [N, C, number, number], D>,
  options: UpsampleOptions,
): Tensor<[N, C, number, number], D> {
  const [h, w] = x.shape.slice(2) as number[];
  const size = options.size ?? (options.scale ? [Math.floor(h * options.scale), Math.floor(w * options.scale)] : undefined);
  if (!size) throw traceError("upsample: give size or scale");
  return emit(undefined, "upsample", [x], {
    size: [size[0], size[1]],
    mode: options.mode ?? "nearest",
    alignCorners: options.alignCorners ?? false,
  });
}

/** [N, C*r*r, H, W] -> [N, C, H*r, W*r]. */
export function pixelShuffle<D extends FloatDType>(
  x: Tensor<Shape, D>,
  factor: number,
): Tensor<[number, number, number, number], D> {
  return emit(undefined, "pixelShuffle", [x], { factor });
}

/** Zeroes elements with probability p (scaling the rest by 1/(1-p)) in training; identity at eval. */
export function dropout<S extends Shape, D extends FloatDType>(x: Tensor<S, D>, p: number): Tensor<S, D> {
  if (!isTraining() || p === 0) return x;
  return emit(undefined, "dropout", [x], { p, stream: currentTrace().nextStream() });
}

/** Stochastic depth: drops whole samples (axis 0) of a residual branch with probability p in training. */
export function dropPath<S extends Shape, D extends FloatDType>(x: Tensor<S, D>, p: number): Tensor<S, D> {
  if (!isTraining() || p === 0) return x;
  return emit(undefined, "dropPath", [x], { p, stream: currentTrace().nextStream() });
}

export type Reduction = "mean" | "sum" | "none";

function reduceLoss<D extends FloatDType>(x: Tensor<Shape, D>, reduction: Reduction): Tensor<Shape, D> {
  if (reduction === "none") return x;
  const all = [...Array(x.rank).keys()];
  return reduction === "sum" ? x.sum(all) : x.mean(all);
}

export function l1Loss<D extends FloatDType>(
  pred: Tensor<Shape, D>,
  target: Tensor<Shape, D>,
  reduction: Reduction = "mean",
): Tensor<Shape, D> {
  return reduceLoss(pred.sub(target).abs(), reduction);
}

export function mseLoss<D extends FloatDType>(
  pred: Tensor<Shape, D>,
  target: Tensor<Shape, D>,
  reduction: Reduction = "mean",
): Tensor<Shape, D> {
  const d: Tensor<Shape, D> = pred.sub(target);
  return reduceLoss(d.mul(d), reduction);
}

/**
 * Softmax cross-entropy, torch layout: logits [N, C, ...], target [N, ...] (i32 class ids).
 * Targets equal to ignoreIndex contribute nothing; the mean is over the others (0 if none).
 */
export function crossEntropy<D extends FloatDType>(
  logits: Tensor<Shape, D>,
  target: Tensor<Shape, "i32">,
  options: { ignoreIndex?: number; reduction?: Reduction } = {},
): Tensor<Shape, D> {
  const dims = logits.shape as readonly number[];
  const tdims = target.shape as readonly number[];
  if (dims.length < 2 || tdims.length !== dims.length - 1 || tdims.some((d, i) => d !== dims[i === 0 ? 0 : i + 1])) {
    throw traceError(
      `crossEntropy: target [${tdims.join(",")}] does not match logits [${dims.join(",")}] (expected [N, ...] without C)`,
    );
  }
  const c = dims[1];
  const m = logits.max(1, true);
  const lse = logits.sub(m).exp().sum(1, true).log().add(m);
  const logp = logits.sub(lse);
  const t = target.cast(logits.dtype);
  const classes = arange(c, logits.dtype).reshape([1, c, ...tdims.slice(1).map(() => 1)]);
  const onehot = classes.eq(t.unsqueeze(1));
  const nll = logp.mul(onehot).sum(1).neg();
  const valid = scalar(1, logits.dtype).sub(t.eq(options.ignoreIndex ?? -100));
  const losses = nll.mul(valid);
  const reduction = options.reduction ?? "mean";
  if (reduction === "none") return losses;
  const all = [...Array(tdims.length).keys()];
  const total = losses.sum(all);
  return reduction === "sum" ? total : total.div(valid.sum(all).maximum(1));
}

/** Fails the trace with a message at the user's line (for checks a model makes on its own). */
export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new UserError(message, traceError(message).where);
}
