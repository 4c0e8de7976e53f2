// Fused elementwise regions of a graph -> one generated kernel. The region's nodes become one scalar
// expression (the op table below), its outside operands become the kernel's inputs. With roundBf16
// (default) every bf16-typed intermediate is rounded as the unfused graph would store it, so the
// kernel reproduces the CPU executor's semantics; without it the math stays in f32 throughout.

import { UserError } from "../compiler/ir/errors.ts";
import type { Graph, Node } from "../compiler/ir/index.ts";
import { formatLoc } from "../compiler/ir/index.ts";
import {
  abs,
  cast,
  type ElemType,
  type Expr,
  erf,
  exp,
  exp2,
  f32,
  gelu,
  geluTanh,
  i32,
  type KernelProgram,
  log,
  log2,
  roundBf16,
  rsqrt,
  select,
  sigmoid,
  sqrt,
  tanh,
} from "../compiler/tile/index.ts";
import { elementwiseKernel } from "./elementwise.ts";

export interface ElementwiseRegion {
  readonly graph: Graph;
  /** The region's nodes in topological order, each an elementwise op (or broadcastTo). */
  readonly nodes: readonly number[];
  /** The node whose value the kernel writes. */
  readonly output: number;
}

export interface LoweredElementwise {
  readonly kernel: KernelProgram;
  /** Graph node ids feeding in0, in1, ... in order. */
  readonly inputs: readonly number[];
  readonly output: number;
}

type V = Expr<"f32" | "i32">;

/** The ops this table lowers (the IR's elementwise ops, plus broadcastTo, which is free per element). */
export const ELEMENTWISE_LOWERABLE = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "abs",
  "sigmoid",
  "relu",
  "tanh",
  "erf",
  "gelu",
  "add",
  "sub",
  "mul",
  "div",
  "pow",
  "maximum",
  "minimum",
  "eq",
  "lt",
  "le",
  "gt",
  "ge",
  "where",
  "cast",
  "broadcastTo",
] as const;

const isF = (x: V): x is Expr<"f32"> => x.type === "f32";

/** pow with C's special cases (pow(x, 0) = 1, pow(1, y) = 1, negative bases with integer exponents). */
export function powOf(a: Expr<"f32">, b: Expr<"f32">): Expr<"f32"> {
  const mag = exp2(b.mul(log2(abs(a))));
  const bi = cast(b, "i32");
  const isInt = cast(bi, "f32").eq(b);
  const odd = bi.and(1).eq(1);
  const neg = select(isInt, select(odd, mag.neg(), mag), f32(Number.NaN));
  const r = select(a.lt(0), neg, mag);
  return select(b.eq(0).or(a.eq(1)), f32(1), r);
}

/** The value of elementwise node `n` from its operands' values (bf16/f32 as f32, i32 as i32). */
export function elementwiseValue(n: Node, args: V[]): V {
  const [a, b, c] = args;
  const one = (t: V) => (isF(t) ? f32(1) : i32(1));
  const zero = (t: V) => (isF(t) ? f32(0) : i32(0));
  const flt = (x: V): Expr<"f32"> => {
    if (!isF(x)) throw new UserError(`${n.op} needs a float operand`, n.loc ? formatLoc(n.loc) : undefined);
    return x;
  };
  switch (n.op) {
    case "neg":
      return (a as Expr<"f32">).neg();
    case "abs":
      return abs(a as Expr<"f32">);
    case "relu":
      return select(a.lt(zero(a) as never), zero(a), a);
    case "exp":
      return exp(flt(a));
    case "log":
      return log(flt(a));
    case "sqrt":
      return sqrt(flt(a));
    case "rsqrt":
      return rsqrt(flt(a));
    case "sigmoid":
      return sigmoid(flt(a));
    case "tanh":
      return tanh(flt(a));
    case "erf":
      return erf(flt(a));
    case "gelu":
      return n.attrs.approximate === "tanh" ? geluTanh(flt(a)) : gelu(flt(a));
    case "add":
      return (a as Expr<"f32">).add(b as Expr<"f32">);
    case "sub":
      return (a as Expr<"f32">).sub(b as Expr<"f32">);
    case "mul":
      return (a as Expr<"f32">).mul(b as Expr<"f32">);
    case "div":
      return (a as Expr<"f32">).div(b as Expr<"f32">);
    case "pow":
      return powOf(flt(a), flt(b));
    case "maximum": // NaN wins, as torch.maximum and the CPU executor.
      return select((a as Expr<"f32">).gt(b as Expr<"f32">).or((a as Expr<"f32">).ne(a as Expr<"f32">)), a, b);
    case "minimum":
      return select((a as Expr<"f32">).lt(b as Expr<"f32">).or((a as Expr<"f32">).ne(a as Expr<"f32">)), a, b);
    case "eq":
    case "lt":
    case "le":
    case "gt":
    case "ge":
      return select((a as Expr<"f32">)[n.op](b as Expr<"f32">), one(a), zero(a));
    case "where":
      return select((a as Expr<"f32">).ne(zero(a) as Expr<"f32">), b, c);
    case "cast":
      return n.dtype === "i32" ? cast(a, "i32") : cast(a, "f32");
    case "broadcastTo":
      return a;
  }
  throw new UserError(`op ${n.op} has no elementwise lowering`, n.loc ? formatLoc(n.loc) : undefined);
}

export function elementwiseFromGraph(
  name: string,
  region: ElementwiseRegion,
  o: { roundBf16?: boolean; warps?: number; vec?: number } = {},
): LoweredElementwise {
  const g = region.graph;
  const inside = new Set(region.nodes);
  if (!inside.has(region.output)) throw new Error(`elementwise region: output %${region.output} is not in the region`);
  const inputs: number[] = [];
  for (const id of region.nodes) {
    for (const i of g.node(id).inputs) if (!inside.has(i) && !inputs.includes(i)) inputs.push(i);
  }
  const elem = (d: string): ElemType => d as ElemType;
  const round = o.roundBf16 ?? true;
  const outNode = g.node(region.output);
  const kernel = elementwiseKernel({
    name,
    inputs: inputs.map((i) => ({ dtype: elem(g.node(i).dtype), shape: g.node(i).shape })),
    out: { dtype: elem(outNode.dtype), shape: outNode.shape },
    warps: o.warps,
    vec: o.vec,
    doc: `fused ${region.nodes.map((id) => g.node(id).op).join(" ")}`,
    fn: (xs) => {
      const val = new Map<number, V>();
      for (const [j, id] of inputs.entries()) val.set(id, xs[j]);
      for (const id of region.nodes) {
        const n = g.node(id);
        let v = elementwiseValue(
          n,
          n.inputs.map((i) => val.get(i)!),
        );
        if (round && n.dtype === "bf16" && isF(v)) v = roundBf16(v);
        val.set(id, v);
      }
      return val.get(region.output)!;
    },
  });
  return { kernel, inputs, output: region.output };
}
