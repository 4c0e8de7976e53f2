// The scalar expression language: a pure DAG over per-thread values. Index arithmetic, predicates,
// tile maps, epilogues and generated elementwise kernels are all written as Exprs. An Expr is
// evaluated where a statement uses it (it reads variables at that point); `k.let` snapshots one.
// Transcendentals (exp, tanh, erf, gelu, ...) are single ops here; the renderer expands them into
// accurate instruction sequences (see compiler/codegen/render-math.ts).

import type { IntType, NumType, ScalarType } from "./types.ts";

export type SpecialReg = "tid.x" | "ctaid.x" | "ctaid.y" | "ctaid.z" | "nctaid.x" | "nctaid.y" | "nctaid.z" | "laneid";

export type LeafOp = "const" | "param" | "special" | "var" | "slot" | "row" | "col";
export type UnaryOp =
  | "neg"
  | "abs"
  | "not"
  | "exp"
  | "exp2"
  | "log"
  | "log2"
  | "sqrt"
  | "rsqrt"
  | "rcp"
  | "tanh"
  | "erf"
  | "sigmoid"
  | "gelu"
  | "geluTanh"
  | "roundBf16"
  | "cast"
  | "bitcast";
export type BinaryOp = "add" | "sub" | "mul" | "div" | "rem" | "min" | "max" | "shl" | "shr" | "and" | "or" | "xor";
export type CompareOp = "lt" | "le" | "gt" | "ge" | "eq" | "ne";
export type ExprOp = LeafOp | UnaryOp | BinaryOp | CompareOp | "fma" | "select";

export const FLOAT_UNARY: readonly UnaryOp[] = [
  "exp",
  "exp2",
  "log",
  "log2",
  "sqrt",
  "rsqrt",
  "rcp",
  "tanh",
  "erf",
  "sigmoid",
  "gelu",
  "geluTanh",
  "roundBf16",
];

export type Operand<T extends ScalarType> = Expr<T> | number;

/** A node of the expression DAG. `value` is a constant's number, a param/special name, or a var/slot id. */
export class Expr<T extends ScalarType = ScalarType> {
  constructor(
    readonly op: ExprOp,
    readonly type: T,
    readonly args: readonly Expr[] = [],
    readonly value?: number | string,
  ) {}

  add<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("add", this, o);
  }
  sub<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("sub", this, o);
  }
  mul<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("mul", this, o);
  }
  /** Integer division truncates toward zero (PTX div.s32); f32 division is IEEE round-to-nearest. */
  div<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("div", this, o);
  }
  rem<U extends IntType>(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("rem", this, o);
  }
  shl<U extends IntType>(this: Expr<U>, o: number): Expr<U> {
    return binary("shl", this, o);
  }
  /** Arithmetic shift right. */
  shr<U extends IntType>(this: Expr<U>, o: number): Expr<U> {
    return binary("shr", this, o);
  }
  and<U extends IntType | "pred">(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("and", this, o);
  }
  or<U extends IntType | "pred">(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("or", this, o);
  }
  xor<U extends IntType>(this: Expr<U>, o: Operand<U>): Expr<U> {
    return binary("xor", this, o);
  }
  neg<U extends NumType>(this: Expr<U>): Expr<U> {
    return unary("neg", this);
  }
  not(this: Expr<"pred">): Expr<"pred"> {
    return unary("not", this);
  }
  lt<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<"pred"> {
    return compare("lt", this, o);
  }
  le<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<"pred"> {
    return compare("le", this, o);
  }
  gt<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<"pred"> {
    return compare("gt", this, o);
  }
  ge<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<"pred"> {
    return compare("ge", this, o);
  }
  eq<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<"pred"> {
    return compare("eq", this, o);
  }
  ne<U extends NumType>(this: Expr<U>, o: Operand<U>): Expr<"pred"> {
    return compare("ne", this, o);
  }
  /** Integer ceil(this / o) for non-negative operands. */
  ceilDiv<U extends IntType>(this: Expr<U>, o: number): Expr<U> {
    return this.add(o - 1).div(o);
  }
}

export function constant<T extends ScalarType>(value: number, type: T): Expr<T> {
  if (type !== "f32" && !Number.isInteger(value)) throw new Error(`constant ${value} is not an integer (${type})`);
  if (type === "pred" && value !== 0 && value !== 1) throw new Error(`pred constant must be 0 or 1, got ${value}`);
  return new Expr("const", type, [], value);
}

export const i32 = (v: number): Expr<"i32"> => constant(v, "i32");
export const i64 = (v: number): Expr<"i64"> => constant(v, "i64");
export const f32 = (v: number): Expr<"f32"> => constant(v, "f32");
export const TRUE = constant(1, "pred");
export const FALSE = constant(0, "pred");

function lift<T extends ScalarType>(o: Operand<T>, type: T): Expr<T> {
  if (typeof o === "number") return constant(o, type);
  if (o.type !== type) throw new Error(`operand type ${o.type} does not match ${type}: cast it first`);
  return o;
}

export function isConst(e: Expr, v?: number): boolean {
  return e.op === "const" && (v === undefined || e.value === v);
}

function foldInt(op: BinaryOp, a: number, b: number, type: IntType): number | undefined {
  const wrap = (x: number) => (type === "i32" ? x | 0 : x);
  switch (op) {
    case "add":
      return wrap(a + b);
    case "sub":
      return wrap(a - b);
    case "mul":
      return type === "i32" ? Math.imul(a, b) : a * b;
    case "div":
      return b === 0 ? undefined : Math.trunc(a / b);
    case "rem":
      return b === 0 ? undefined : a % b;
    case "min":
      return Math.min(a, b);
    case "max":
      return Math.max(a, b);
    case "shl":
      return type === "i32" ? a << b : a * 2 ** b;
    case "shr":
      return type === "i32" ? a >> b : Math.floor(a / 2 ** b);
    case "and":
      return type === "i32" ? a & b : undefined;
    case "or":
      return type === "i32" ? a | b : undefined;
    case "xor":
      return type === "i32" ? a ^ b : undefined;
  }
}

export function binary<T extends ScalarType>(op: BinaryOp, a: Operand<T>, b: Operand<T>): Expr<T> {
  const type = (typeof a === "number" ? (b as Expr<T>).type : a.type) as T;
  const x = lift(a, type);
  const y = lift(b, type);
  if (type === "i32" || type === "i64") {
    // Small integer folds keep index arithmetic readable in the printed IR and the PTX.
    if (x.op === "const" && y.op === "const") {
      const v = foldInt(op, x.value as number, y.value as number, type);
      if (v !== undefined) return constant(v, type);
    }
    // Re-associate constant chains: (x * a) * b -> x * (a b), (x + a) + b -> x + (a + b).
    if (y.op === "const" && x.op === op && (op === "mul" || op === "add") && x.args[1].op === "const") {
      const v = foldInt(op, x.args[1].value as number, y.value as number, type);
      if (v !== undefined) return binary(op, x.args[0] as Expr<T>, constant(v, type));
    }
    if ((op === "add" || op === "sub" || op === "shl" || op === "shr" || op === "or" || op === "xor") && isConst(y, 0)) return x;
    if (op === "add" && isConst(x, 0)) return y;
    if ((op === "mul" || op === "div") && isConst(y, 1)) return x;
    if (op === "mul" && isConst(x, 1)) return y;
    if (op === "mul" && (isConst(x, 0) || isConst(y, 0))) return constant(0, type);
  }
  if (type === "pred" && op !== "and" && op !== "or") throw new Error(`${op} is not defined on predicates`);
  if (type === "f32" && ["rem", "shl", "shr", "and", "or", "xor"].includes(op)) throw new Error(`${op} is not defined on f32`);
  return new Expr(op, type, [x, y]);
}

export function unary<T extends ScalarType>(op: UnaryOp, a: Expr<T>): Expr<T> {
  if (FLOAT_UNARY.includes(op) && a.type !== "f32") throw new Error(`${op} needs an f32 operand, got ${a.type}`);
  if (op === "not" && a.type !== "pred") throw new Error("not needs a predicate");
  if (a.op === "const" && op === "neg") return constant(-(a.value as number), a.type);
  return new Expr(op, a.type, [a]);
}

export function compare<T extends NumType>(op: CompareOp, a: Operand<T>, b: Operand<T>): Expr<"pred"> {
  const type = (typeof a === "number" ? (b as Expr<T>).type : a.type) as T;
  return new Expr(op, "pred", [lift(a, type), lift(b, type)]);
}

// Free functions: the math of the expression language.
export const exp = (x: Expr<"f32">): Expr<"f32"> => unary("exp", x);
export const exp2 = (x: Expr<"f32">): Expr<"f32"> => unary("exp2", x);
export const log = (x: Expr<"f32">): Expr<"f32"> => unary("log", x);
export const log2 = (x: Expr<"f32">): Expr<"f32"> => unary("log2", x);
export const sqrt = (x: Expr<"f32">): Expr<"f32"> => unary("sqrt", x);
export const rsqrt = (x: Expr<"f32">): Expr<"f32"> => unary("rsqrt", x);
export const rcp = (x: Expr<"f32">): Expr<"f32"> => unary("rcp", x);
export const tanh = (x: Expr<"f32">): Expr<"f32"> => unary("tanh", x);
export const erf = (x: Expr<"f32">): Expr<"f32"> => unary("erf", x);
export const sigmoid = (x: Expr<"f32">): Expr<"f32"> => unary("sigmoid", x);
/** GELU, erf form: x/2 (1 + erf(x/sqrt 2)). */
export const gelu = (x: Expr<"f32">): Expr<"f32"> => unary("gelu", x);
/** GELU, tanh form: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export const geluTanh = (x: Expr<"f32">): Expr<"f32"> => unary("geluTanh", x);
/** Rounds an f32 to the nearest bf16 (ties to even) and back: models a bf16 intermediate. */
export const roundBf16 = (x: Expr<"f32">): Expr<"f32"> => unary("roundBf16", x);
export const abs = <T extends NumType>(x: Expr<T>): Expr<T> => unary("abs", x);
export const not = (x: Expr<"pred">): Expr<"pred"> => unary("not", x);
export const max = <T extends NumType>(a: Expr<T>, b: Operand<T>): Expr<T> => binary("max", a, b);
export const min = <T extends NumType>(a: Expr<T>, b: Operand<T>): Expr<T> => binary("min", a, b);

export function fma(a: Expr<"f32">, b: Operand<"f32">, c: Operand<"f32">): Expr<"f32"> {
  return new Expr("fma", "f32", [a, lift(b, "f32"), lift(c, "f32")]);
}

export function select<T extends ScalarType>(cond: Expr<"pred">, a: Operand<T>, b: Operand<T>): Expr<T> {
  const type = (typeof a === "number" ? (b as Expr<T>).type : a.type) as T;
  if (isConst(cond, 1)) return lift(a, type);
  if (isConst(cond, 0)) return lift(b, type);
  return new Expr("select", type, [cond, lift(a, type), lift(b, type)]);
}

/** Reinterprets the 32 bits of an i32 as an f32 or back (frexp-style bit tricks in math expansions). */
export function bitcast<T extends "i32" | "f32">(x: Expr<"i32" | "f32">, type: T): Expr<T> {
  if (x.type === type) return x as Expr<T>;
  return new Expr("bitcast", type, [x]) as Expr<T>;
}

/** Converts between scalar types: int->f32 rounds to nearest, f32->int truncates, i64->i32 wraps, pred->0/1. */
export function cast<T extends ScalarType>(x: Expr, type: T): Expr<T> {
  if (x.type === type) return x as Expr<T>;
  if (x.op === "const" && type !== "pred" && x.type !== "f32") return constant(x.value as number, type);
  return new Expr("cast", type, [x]) as Expr<T>;
}

export function special(name: SpecialReg): Expr<"i32"> {
  return new Expr("special", "i32", [], name);
}

export function paramRef<T extends ScalarType>(name: string, type: T): Expr<T> {
  return new Expr("param", type, [], name);
}

/** Every node reachable from `roots`, children before parents, each once. */
export function postorder(roots: readonly Expr[]): Expr[] {
  const seen = new Set<Expr>();
  const out: Expr[] = [];
  const visit = (e: Expr) => {
    if (seen.has(e)) return;
    seen.add(e);
    for (const a of e.args) visit(a);
    out.push(e);
  };
  for (const r of roots) visit(r);
  return out;
}
