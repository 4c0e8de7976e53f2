// Expr -> PTX instructions. Primitive ops are a table from (op, type) to an instruction; composite
// math expands through render-math.ts first. Within one statement each DAG node is emitted once
// (memo); nodes that depend on the current tile element (slot/row/col leaves) are memoised per
// element, the rest once per statement. Thread coordinates (expressions of special registers and
// constants only) are computed once at entry and shared by every statement.

import type { Expr } from "../tile/expr.ts";
import type { ScalarType } from "../tile/types.ts";
import { f32Literal, type PtxWriter, regClassOf } from "./ptx-writer.ts";
import { expandMath } from "./render-math.ts";

/** Resolves the leaves a renderer cannot know by itself. */
export interface ExprEnv {
  varReg(id: number): string;
  paramReg(name: string): string;
  specialReg(name: string): string;
  /** Element-dependent leaves of a tile map (slot i, row, col); undefined outside maps. */
  element?: (e: Expr) => string;
}

const SUFFIX: Record<Exclude<ScalarType, "pred">, string> = { i32: "s32", i64: "s64", f32: "f32" };
const BITS: Record<ScalarType, string> = { pred: "pred", i32: "b32", i64: "b64", f32: "f32" };

const ELEMENT_LEAVES = new Set(["slot", "row", "col"]);
const LEAVES = new Set(["const", "param", "special", "var", "slot", "row", "col"]);

export class ExprRenderer {
  private stmtMemo = new Map<Expr, string>();
  private elemMemo = new Map<Expr, string>();
  private readonly elementDependent = new Map<Expr, boolean>();
  private readonly threadOnly = new Map<Expr, boolean>();
  /** Thread-invariant values by structure, computed in the prologue. */
  private readonly threadMemo = new Map<string, string>();

  constructor(
    readonly w: PtxWriter,
    private readonly env: ExprEnv,
  ) {}

  /** Starts a new statement: variables may have changed, nothing is reused. */
  newStatement(): void {
    this.stmtMemo = new Map();
    this.elemMemo = new Map();
  }

  /** Starts a new element of a map: element-dependent values are recomputed. */
  newElement(): void {
    this.elemMemo = new Map();
  }

  setElement(fn: ((e: Expr) => string) | undefined): void {
    this.env.element = fn;
  }

  private dependsOnElement(e: Expr): boolean {
    let d = this.elementDependent.get(e);
    if (d === undefined) {
      d = ELEMENT_LEAVES.has(e.op) || e.args.some((a) => this.dependsOnElement(a));
      this.elementDependent.set(e, d);
    }
    return d;
  }

  /** An operand: an immediate for constants, else a register. */
  value(e: Expr): string {
    if (e.op === "const" && e.type !== "pred") return immediate(e);
    return this.reg(e);
  }

  /**
   * Thread coordinates: expressions of special registers and constants only (lane bits, a thread's
   * chunk of a tile copy, its swizzled offset). They are computed once, at entry, and shared by
   * every statement; they are few and small, so they cost a handful of registers.
   */
  private threadInvariant(e: Expr): boolean {
    let d = this.threadOnly.get(e);
    if (d === undefined) {
      d =
        e.op === "special" ||
        (e.args.length > 0 && e.op !== "var" && e.args.every((a) => a.op === "const" || this.threadInvariant(a)));
      this.threadOnly.set(e, d);
    }
    return d;
  }

  /** A register holding e. */
  reg(e: Expr): string {
    if (e.op !== "special" && this.threadInvariant(e)) {
      const key = structuralKey(e);
      let r = this.threadMemo.get(key);
      if (!r) {
        const was = this.w.toPrologue;
        this.w.toPrologue = true;
        try {
          r = this.emit(e);
        } finally {
          this.w.toPrologue = was;
        }
        this.threadMemo.set(key, r);
      }
      return r;
    }
    const memo = this.dependsOnElement(e) ? this.elemMemo : this.stmtMemo;
    const hit = memo.get(e);
    if (hit) return hit;
    const r = this.emit(e);
    memo.set(e, r);
    return r;
  }

  /** Evaluates e into the given register (the statement's destination). */
  into(dst: string, e: Expr): void {
    const memo = this.dependsOnElement(e) ? this.elemMemo : this.stmtMemo;
    if (!LEAVES.has(e.op) && !memo.has(e) && !expandMath(e) && !this.threadInvariant(e)) {
      // The last instruction of e's sequence writes dst directly; its operands are computed first.
      this.emit(e, dst);
      return;
    }
    const src = this.value(e);
    if (src !== dst) this.w.ins(`mov.${BITS[e.type]} ${dst}, ${src}`);
  }

  private fresh(t: ScalarType): string {
    return this.w.reg(regClassOf(t));
  }

  private emit(e: Expr, into?: string): string {
    const w = this.w;
    switch (e.op) {
      case "const": {
        const r = this.fresh(e.type);
        if (e.type === "pred") {
          const z = this.fresh("i32");
          w.ins(`mov.b32 ${z}, 0`);
          w.ins(`setp.${e.value ? "eq" : "ne"}.s32 ${r}, ${z}, 0`);
        } else w.ins(`mov.${BITS[e.type]} ${r}, ${immediate(e)}`);
        return r;
      }
      case "var":
        return this.env.varReg(e.value as number);
      case "param":
        return this.env.paramReg(e.value as string);
      case "special":
        return this.env.specialReg(e.value as string);
      case "slot":
      case "row":
      case "col":
        if (!this.env.element) throw new Error(`${e.op} leaf used outside a tile map`);
        return this.env.element(e);
    }
    const expanded = expandMath(e);
    if (expanded) return this.reg(expanded);
    const t = e.type;
    const d = into ?? this.fresh(t);
    const a = e.args;
    const sfx = t === "pred" ? "" : SUFFIX[t];
    switch (e.op) {
      case "add":
      case "sub":
      case "min":
      case "max":
        w.ins(`${e.op}.${sfx} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "mul":
        if (t === "i64") {
          const wide = this.wideMul(d, a[0], a[1]);
          if (wide) return d;
        }
        w.ins(`${t === "f32" ? "mul.f32" : `mul.lo.${sfx}`} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "div":
        w.ins(`${t === "f32" ? "div.rn.f32" : `div.${sfx}`} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "rem":
        w.ins(`rem.${sfx} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "shl":
        w.ins(`shl.${BITS[t]} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "shr":
        w.ins(`shr.${sfx} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "and":
      case "or":
      case "xor":
        w.ins(`${e.op}.${BITS[t]} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      case "neg":
      case "abs":
        w.ins(`${e.op}.${sfx} ${d}, ${this.reg(a[0])}`);
        return d;
      case "not":
        w.ins(`not.pred ${d}, ${this.reg(a[0])}`);
        return d;
      case "fma":
        w.ins(`fma.rn.f32 ${d}, ${this.reg(a[0])}, ${this.value(a[1])}, ${this.value(a[2])}`);
        return d;
      case "exp2":
        w.ins(`ex2.approx.f32 ${d}, ${this.reg(a[0])}`);
        return d;
      case "sqrt":
        w.ins(`sqrt.rn.f32 ${d}, ${this.reg(a[0])}`);
        return d;
      case "rsqrt":
        w.ins(`rsqrt.approx.f32 ${d}, ${this.reg(a[0])}`);
        return d;
      case "rcp":
        w.ins(`rcp.rn.f32 ${d}, ${this.reg(a[0])}`);
        return d;
      case "roundBf16": {
        // Pack with a zero low half: the b32 is then exactly the f32 bits of the rounded value.
        const zero = this.fresh("f32");
        const packed = this.w.reg("b32");
        w.ins(`mov.f32 ${zero}, 0f00000000`);
        w.ins(`cvt.rn.bf16x2.f32 ${packed}, ${this.reg(a[0])}, ${zero}`);
        w.ins(`mov.b32 ${d}, ${packed}`);
        return d;
      }
      case "lt":
      case "le":
      case "gt":
      case "ge":
      case "eq":
      case "ne": {
        const at = a[0].type as Exclude<ScalarType, "pred">;
        // Float != is unordered (true with NaN), the others ordered, as in JavaScript.
        const cmp = at === "f32" && e.op === "ne" ? "neu" : e.op;
        w.ins(`setp.${cmp}.${SUFFIX[at]} ${d}, ${this.reg(a[0])}, ${this.value(a[1])}`);
        return d;
      }
      case "select":
        if (t === "pred") {
          const c = this.reg(a[0]);
          const x = this.fresh("pred");
          const y = this.fresh("pred");
          w.ins(`and.pred ${x}, ${c}, ${this.reg(a[1])}`);
          w.ins(`not.pred ${y}, ${c}`);
          w.ins(`and.pred ${y}, ${y}, ${this.reg(a[2])}`);
          w.ins(`or.pred ${d}, ${x}, ${y}`);
          return d;
        }
        w.ins(`selp.${BITS[t]} ${d}, ${this.value(a[1])}, ${this.value(a[2])}, ${this.reg(a[0])}`);
        return d;
      case "bitcast":
        w.ins(`mov.b32 ${d}, ${this.reg(a[0])}`);
        return d;
      case "cast":
        this.cast(d, t, a[0]);
        return d;
    }
    throw new Error(`no PTX for expression op ${e.op} (${t})`);
  }

  /** i64 = i64(a) * i64(b) with 32-bit sources: one mul.wide.s32. */
  private wideMul(d: string, a: Expr, b: Expr): boolean {
    const narrow = (x: Expr): Expr | undefined =>
      x.op === "cast" && x.args[0].type === "i32"
        ? x.args[0]
        : x.op === "const" && Math.abs(x.value as number) < 2 ** 31
          ? x
          : undefined;
    const x = narrow(a);
    const y = narrow(b);
    if (!x || !y || x.op === "const") return false;
    this.w.ins(`mul.wide.s32 ${d}, ${this.reg(x)}, ${y.op === "const" ? String(y.value) : this.reg(y)}`);
    return true;
  }

  private cast(d: string, to: ScalarType, x: Expr): void {
    const from = x.type;
    const w = this.w;
    const s = this.reg(x);
    if (from === "pred") {
      const one = to === "f32" ? f32Literal(1) : "1";
      const zero = to === "f32" ? f32Literal(0) : "0";
      w.ins(`selp.${BITS[to]} ${d}, ${one}, ${zero}, ${s}`);
      return;
    }
    if (to === "pred") {
      w.ins(`setp.${from === "f32" ? "neu" : "ne"}.${SUFFIX[from]} ${d}, ${s}, ${from === "f32" ? f32Literal(0) : "0"}`);
      return;
    }
    const key = `${from}->${to}`;
    const table: Record<string, string> = {
      "i32->i64": "cvt.s64.s32",
      "i64->i32": "cvt.u32.u64",
      "i32->f32": "cvt.rn.f32.s32",
      "i64->f32": "cvt.rn.f32.s64",
      "f32->i32": "cvt.rzi.s32.f32",
      "f32->i64": "cvt.rzi.s64.f32",
    };
    w.ins(`${table[key]} ${d}, ${s}`);
  }
}

/** A string naming e's structure: equal for structurally equal expressions. */
const keys = new WeakMap<Expr, string>();
export function structuralKey(e: Expr): string {
  let k = keys.get(e);
  if (k === undefined) {
    k = `${e.op}:${e.type}:${e.value ?? ""}(${e.args.map(structuralKey).join(",")})`;
    keys.set(e, k);
  }
  return k;
}

export function immediate(e: Expr): string {
  const v = e.value as number;
  if (e.type === "f32") return f32Literal(v);
  return String(v);
}
