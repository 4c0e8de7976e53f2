// The tracing context. While a model's forward() runs, every DSL op appends a node to the current
// trace's graph, with the user's source location. Nothing is computed and no weight memory exists:
// a parameter is only a named, shaped node.

import { type Attrs, type DType, Graph, type Node, type Shape, UserError } from "../ir/index.ts";
import { callerLocation } from "./location.ts";

/** How a parameter's initial values are drawn (run by an executor, never while tracing). */
export type Init =
  | { kind: "zeros" }
  | { kind: "ones" }
  | { kind: "const"; value: number }
  | { kind: "normal"; std: number }
  | { kind: "truncNormal"; std: number; a: number; b: number }
  | { kind: "uniform"; low: number; high: number };

/** What the tracer needs from a parameter object; the DSL's Parameter implements it. */
export interface ParamLike {
  readonly shape: Shape;
  readonly dtype: DType;
  readonly init: Init;
}

export interface TraceOptions {
  /** Training mode: dropout and drop-path are traced; at eval they are the identity. */
  training: boolean;
}

export class Trace {
  readonly graph = new Graph();
  readonly training: boolean;
  private readonly paramIds = new Map<ParamLike, number>();
  private readonly paramNames: Map<ParamLike, string>;
  private streams = 0;
  private readonly scopes: string[] = [];

  constructor(options: TraceOptions, paramNames: Map<ParamLike, string> = new Map()) {
    this.training = options.training;
    this.paramNames = paramNames;
  }

  /** Appends a node located at the user's calling line; shape errors are raised there. */
  emit(op: string, inputs: readonly number[], attrs: Attrs = {}): Node {
    return this.graph.add(op, inputs, attrs, callerLocation(), this.scopes.at(-1));
  }

  /** Runs fn with ops attributed to the module at `path` (the tracer wraps each module's forward). */
  inScope<T>(path: string, fn: () => T): T {
    this.scopes.push(path);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** The node of a parameter, created on first use under its dotted name. */
  paramNode(p: ParamLike): number {
    const known = this.paramIds.get(p);
    if (known !== undefined) return known;
    const name = this.paramNames.get(p);
    if (name === undefined) {
      const loc = callerLocation();
      throw new UserError(
        "a parameter is used that is not reachable from the model's module tree (assign it to a module property)",
        loc ? `${loc.file}:${loc.line}:${loc.col}` : undefined,
      );
    }
    const id = this.graph.add("param", [], { name, shape: [...p.shape], dtype: p.dtype, ...initAttrs(p.init) }).id;
    this.paramIds.set(p, id);
    return id;
  }

  /** A fresh random-stream number for a dropout-like op, so every mask in a step differs. */
  nextStream(): number {
    return this.streams++;
  }
}

export function initAttrs(init: Init): Attrs {
  switch (init.kind) {
    case "zeros":
    case "ones":
      return { init: init.kind, initArgs: [] };
    case "const":
      return { init: init.kind, initArgs: [init.value] };
    case "normal":
      return { init: init.kind, initArgs: [init.std] };
    case "truncNormal":
      return { init: init.kind, initArgs: [init.std, init.a, init.b] };
    case "uniform":
      return { init: init.kind, initArgs: [init.low, init.high] };
  }
}

let current: Trace | undefined;

export function currentTrace(): Trace {
  if (!current) {
    throw new UserError("tensor ops run only while a model is traced (inside forward() called by ptc build/run)");
  }
  return current;
}

export function withTrace<T>(trace: Trace, fn: () => T): T {
  const prior = current;
  current = trace;
  try {
    return fn();
  } finally {
    current = prior;
  }
}
