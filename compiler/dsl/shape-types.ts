// Type-level shapes. A dim is a number literal (checked exactly), a named dim (`Named<"B">`,
// checked by name), or plain `number` (unknown: accepted here, checked when tracing). Only
// equality is proved at the type level; arithmetic (reshape products, conv sizes) is left to
// the tracer, as DESIGN.md decides.

declare const dimName: unique symbol;

/** A symbolic dim: a number at run time, a name to the type checker. */
export type Named<N extends string> = number & { readonly [dimName]: N };
export type Dim = number;
export type Shape = readonly Dim[];

export type DType = "f32" | "bf16" | "i32";
export type FloatDType = "f32" | "bf16";

/** A readable type error: the argument type becomes this object, so tsc prints the message. */
export interface ShapeMismatch<Message extends string> {
  readonly "shape error": Message;
}

type IsNamed<A> = A extends { readonly [dimName]: string } ? true : false;
type IsLiteral<A> = number extends A ? false : IsNamed<A> extends true ? false : true;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** false only when both dims are known (two literals or two names) and differ. */
export type DimsAgree<A, B> =
  IsLiteral<A> extends true
    ? IsLiteral<B> extends true
      ? Same<A, B>
      : true
    : IsNamed<A> extends true
      ? IsNamed<B> extends true
        ? Same<A, B>
        : true
      : true;

export type DimText<A> = A extends { readonly [dimName]: infer N extends string }
  ? N
  : number extends A
    ? "number"
    : `${A & number}`;

type KnownRank<S extends Shape> = number extends S["length"] ? false : true;

type IsKnown<A> = number extends A ? false : true;

/** The broadcast of two dims; a known dim (literal or named) wins over `number`. */
type BroadcastDim<A, B> = [A] extends [1]
  ? B
  : [B] extends [1]
    ? A
    : DimsAgree<A, B> extends true
      ? IsKnown<A> extends true
        ? A
        : B
      : never;

type BroadcastRev<A extends Shape, B extends Shape, Acc extends Shape = []> = A extends readonly [
  ...infer AR extends Shape,
  infer a extends Dim,
]
  ? B extends readonly [...infer BR extends Shape, infer b extends Dim]
    ? [BroadcastDim<a, b>] extends [never]
      ? ShapeMismatch<`dims ${DimText<a>} and ${DimText<b>} do not broadcast`>
      : BroadcastRev<AR, BR, [BroadcastDim<a, b>, ...Acc]>
    : [...A, ...Acc]
  : [...B, ...Acc];

/** numpy broadcasting of two shapes, or a ShapeMismatch naming the dims that clash. */
export type Broadcast<A extends Shape, B extends Shape> =
  KnownRank<A> extends true ? (KnownRank<B> extends true ? BroadcastRev<A, B> : Shape) : Shape;

/** `unknown` when A and B broadcast (so `T & Check` is just T), the mismatch otherwise. */
export type CheckBroadcast<A extends Shape, B extends Shape> =
  Broadcast<A, B> extends ShapeMismatch<string> ? Broadcast<A, B> : unknown;

export type ShapeOf<R> = R extends ShapeMismatch<string> ? Shape : R extends Shape ? R : Shape;

type MatmulRes<A extends Shape, B extends Shape> = A extends readonly [...infer AB extends Shape, infer M, infer K]
  ? B extends readonly [...infer BB extends Shape, infer K2, infer N]
    ? DimsAgree<K, K2> extends true
      ? Broadcast<AB, BB> extends infer Batch
        ? Batch extends ShapeMismatch<string>
          ? ShapeMismatch<`matmul batch dims do not broadcast`>
          : Batch extends Shape
            ? [...Batch, M & Dim, N & Dim]
            : Shape
        : never
      : ShapeMismatch<`matmul inner dims differ: ${DimText<K>} vs ${DimText<K2>}`>
    : ShapeMismatch<"matmul needs operands of rank >= 2">
  : ShapeMismatch<"matmul needs operands of rank >= 2">;

export type Matmul<A extends Shape, B extends Shape> =
  KnownRank<A> extends true ? (KnownRank<B> extends true ? MatmulRes<A, B> : Shape) : Shape;

export type CheckMatmul<A extends Shape, B extends Shape> = Matmul<A, B> extends ShapeMismatch<string> ? Matmul<A, B> : unknown;

/** Swaps the last two dims (the `.mT` of PyTorch). */
export type SwapLast2<S extends Shape> = S extends readonly [...infer H extends Shape, infer A, infer B] ? [...H, B, A] : Shape;

/** The last dim must equal D (Linear's in_features, LayerNorm's C). */
export type CheckLastDim<S extends Shape, D extends Dim> =
  KnownRank<S> extends true
    ? S extends readonly [...Shape, infer L]
      ? DimsAgree<L, D> extends true
        ? unknown
        : ShapeMismatch<`last dim is ${DimText<L>}, expected ${DimText<D>}`>
      : ShapeMismatch<"expected a tensor of rank >= 1">
    : unknown;

export type ReplaceLast<S extends Shape, D extends Dim> = S extends readonly [...infer H extends Shape, Dim] ? [...H, D] : Shape;

type Tuple<N extends number, Acc extends unknown[] = []> = Acc["length"] extends N ? Acc : Tuple<N, [...Acc, unknown]>;

/** Non-negative index for a literal axis (negative counts from the end); number if unknown. */
export type NormAxis<S extends Shape, A extends number> = number extends A
  ? number
  : `${A}` extends `-${infer P extends number}`
    ? S extends readonly [...infer H, ...Tuple<P>]
      ? H["length"]
      : never
    : A;

type DropAt<S extends Shape, I extends number, Acc extends Shape = []> = S extends readonly [
  infer F extends Dim,
  ...infer R extends Shape,
]
  ? Acc["length"] extends I
    ? [...Acc, ...R]
    : DropAt<R, I, [...Acc, F]>
  : Acc;

type SetAt<S extends Shape, I extends number, V extends Dim, Acc extends Shape = []> = S extends readonly [
  infer F extends Dim,
  ...infer R extends Shape,
]
  ? Acc["length"] extends I
    ? [...Acc, V, ...R]
    : SetAt<R, I, V, [...Acc, F]>
  : Acc;

/** Shape after reducing one literal axis (kept as 1 with keepdim); Shape when not provable. */
export type Reduce<S extends Shape, A extends number, K extends boolean> =
  KnownRank<S> extends true
    ? number extends NormAxis<S, A>
      ? Shape
      : K extends true
        ? SetAt<S, NormAxis<S, A>, 1>
        : DropAt<S, NormAxis<S, A>>
    : Shape;

/** The permuted shape for a literal permutation, or a mismatch when the rank differs. */
export type Permute<S extends Shape, P extends readonly number[]> =
  KnownRank<S> extends true
    ? number extends P["length"]
      ? Shape
      : P["length"] extends S["length"]
        ? { -readonly [K in keyof P]: P[K] extends number ? (number extends P[K] ? number : S[NormAxis<S, P[K]>]) : never }
        : ShapeMismatch<`permute of a rank-${S["length"]} tensor needs ${S["length"]} axes, got ${P["length"]}`>
    : Shape;

export type CheckPermute<S extends Shape, P extends readonly number[]> =
  Permute<S, P> extends ShapeMismatch<string> ? Permute<S, P> : unknown;

/** Swaps two literal axes. */
export type Transpose<S extends Shape, A extends number, B extends number> =
  KnownRank<S> extends true
    ? number extends NormAxis<S, A> | NormAxis<S, B>
      ? Shape
      : SetAt<SetAt<S, NormAxis<S, A>, S[NormAxis<S, B>]>, NormAxis<S, B>, S[NormAxis<S, A>]>
    : Shape;

/** A reshape target: -1 entries become `number` (resolved when tracing). */
export type Reshaped<S extends Shape> = { -readonly [K in keyof S]: S[K] extends -1 ? number : S[K] };

/** Same dims up to the leading `[N, C]`: `[N, C, H, W]` style helpers. */
export type WithChannels<S extends Shape, C extends Dim> = S extends readonly [infer N extends Dim, Dim, ...infer R extends Shape]
  ? [N, C, ...R]
  : Shape;
