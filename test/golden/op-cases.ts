// How each golden case becomes a graph: through the DSL wherever the op has a DSL surface (so the
// DSL's argument handling — negative axes, Python slice rules, pad pairs, scalar operands — is
// checked together with the kernel), or with Graph.add for attributes the DSL never emits.

import { readFileSync } from "node:fs";
import path from "node:path";
import type { Reduction } from "../../compiler/dsl/functional.ts";
import { F } from "../../compiler/dsl/index.ts";
import { type AnyTensor, type Tensor, tensorOf } from "../../compiler/dsl/tensor.ts";
import type { Attrs, DType, Graph } from "../../compiler/ir/index.ts";
import { Trace, withTrace } from "../../compiler/trace/index.ts";

export const FIXTURES = path.join(import.meta.dirname, "ops");

export interface CaseInput {
  readonly name: string;
  readonly tensor: string;
  readonly dtype: DType;
}

export interface GoldenCase {
  readonly id: string;
  readonly op: string;
  readonly title: string;
  /** "dsl": built with the DSL below; "graph": one node with `args` as its attrs. */
  readonly via: "dsl" | "graph";
  // biome-ignore lint/suspicious/noExplicitAny: JSON arguments, interpreted per op below
  readonly args: Record<string, any>;
  readonly inputs: readonly CaseInput[];
  readonly output: string;
  readonly outputDType: DType;
  readonly file: string;
}

export function readManifest(): GoldenCase[] {
  return JSON.parse(readFileSync(path.join(FIXTURES, "manifest.json"), "utf8")).cases;
}

type T = Tensor<readonly number[], "f32">;
// biome-ignore lint/suspicious/noExplicitAny: JSON arguments, interpreted per op below
type Builder = (args: Record<string, any>, x: T[]) => AnyTensor;

const unary = (op: "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "abs" | "sigmoid" | "relu" | "tanh" | "erf"): Builder => {
  return (_a, [x]) => x[op]();
};

/** A binary method with a tensor operand, or with a number when the case gives `scalar`. */
const binary = (
  op: "add" | "sub" | "mul" | "div" | "pow" | "maximum" | "minimum" | "eq" | "lt" | "le" | "gt" | "ge",
): Builder => {
  return (a, [x, y]) => (a.scalar !== undefined ? x[op](a.scalar as number) : x[op](y));
};

const reduction = (op: "sum" | "mean" | "max"): Builder => {
  return (a, [x]) => x[op](a.axes as number[], a.keepdim as boolean);
};

const BUILDERS: Record<string, Builder> = {
  neg: unary("neg"),
  exp: unary("exp"),
  log: unary("log"),
  sqrt: unary("sqrt"),
  rsqrt: unary("rsqrt"),
  abs: unary("abs"),
  sigmoid: unary("sigmoid"),
  relu: unary("relu"),
  tanh: unary("tanh"),
  erf: unary("erf"),
  gelu: (a, [x]) => x.gelu(a.approximate),
  add: binary("add"),
  sub: binary("sub"),
  mul: binary("mul"),
  div: binary("div"),
  pow: binary("pow"),
  maximum: binary("maximum"),
  minimum: binary("minimum"),
  eq: binary("eq"),
  lt: binary("lt"),
  le: binary("le"),
  gt: binary("gt"),
  ge: binary("ge"),
  where: (_a, [c, x, y]) => F.where(c, x, y),
  cast: (a, [x]) => x.cast(a.dtype as DType),
  clamp: (a, [x]) => x.clamp(a.min ?? undefined, a.max ?? undefined),
  sum: reduction("sum"),
  mean: reduction("mean"),
  max: reduction("max"),
  softmax: (a, [x]) => x.softmax(a.axis),
  layerNorm: (a, [x, w, b]) => F.layerNorm(x, w, b, a.eps),
  groupNorm: (a, [x, w, b]) => F.groupNorm(x, a.groups, w, b, a.eps),
  reshape: (a, [x]) => x.reshape(a.shape as number[]),
  flatten: (a, [x]) => x.flatten(a.start, a.end),
  unsqueeze: (a, [x]) => x.unsqueeze(a.axis),
  squeeze: (a, [x]) => x.squeeze(a.axis),
  permute: (a, [x]) => x.permute(a.perm as never),
  transpose: (a, [x]) => x.transpose(a.a as number, a.b as number),
  mT: (_a, [x]) => x.mT,
  roll: (a, [x]) => x.roll(a.shifts, a.axes),
  slice: (a, [x]) => x.slice(a.axis, a.start ?? 0, a.end ?? undefined, a.step),
  concat: (a, xs) => F.concat(xs, a.axis),
  pad: (a, [x]) => x.pad(a.pads, a.value),
  take: (a, [x, index]) => x.take(index as unknown as Tensor<readonly number[], "i32">, a.axis),
  broadcastTo: (a, [x]) => x.broadcastTo(a.shape as number[]),
  pixelShuffle: (a, [x]) => F.pixelShuffle(x, a.factor),
  matmul: (a, [x, y]) => (a.mTa ? x.mT : x).matmul((a.mTb ? y.mT : y) as never),
  conv2d: (a, [x, w, b]) =>
    F.conv2d(x as never, w as never, b as never, {
      stride: a.stride,
      padding: a.padding,
      dilation: a.dilation,
      groups: a.groups,
    }),
  upsample: (a, [x]) => F.upsample(x as never, { size: a.size, scale: a.scale, mode: a.mode, alignCorners: a.alignCorners }),
  l1Loss: (a, [p, t]) => F.l1Loss(p, t, a.reduction as Reduction),
  mseLoss: (a, [p, t]) => F.mseLoss(p, t, a.reduction as Reduction),
  crossEntropy: (a, [logits, target]) =>
    F.crossEntropy(logits, target as unknown as Tensor<readonly number[], "i32">, {
      ignoreIndex: a.ignoreIndex,
      reduction: a.reduction,
    }),
  normalize: (a, [x]) => F.normalize(x, a.axis, a.eps),
  linear: (_a, [x, w, b]) => F.linear(x, w, b),
};

/** Ops and DSL functions with a builder (every catalogue op but the sources and the random masks). */
export const BUILT_OPS: ReadonlySet<string> = new Set(Object.keys(BUILDERS));

/** The graph of one case: an input node per fixture input, then the op, as output "out". */
export function buildCase(c: GoldenCase, shapes: ReadonlyMap<string, readonly number[]>): Graph {
  const trace = new Trace({ training: false });
  withTrace(trace, () => {
    const ins = c.inputs.map((i) =>
      trace.graph.add("input", [], { name: i.name, shape: [...(shapes.get(i.tensor) ?? [])], dtype: i.dtype }),
    );
    let out: number;
    if (c.via === "graph") {
      out = trace.graph.add(
        c.op,
        ins.map((n) => n.id),
        c.args as Attrs,
      ).id;
    } else {
      const build = BUILDERS[c.op];
      if (!build) throw new Error(`no DSL builder for golden op '${c.op}'`);
      out = build(
        c.args,
        ins.map((n) => tensorOf<readonly number[], "f32">(n, trace)),
      ).id;
    }
    trace.graph.setOutput("out", out);
  });
  return trace.graph;
}
