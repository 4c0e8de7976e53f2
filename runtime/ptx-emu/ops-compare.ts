// Comparisons and selection: setp (every comparison incl. the unordered float ones, the .and/.or/.xor combine
// with a second predicate, and the `p|q` complement output), selp, testp.

import type { Instruction } from "./ast.ts";
import { CLS, type Decoded, type ExecEnv } from "./machine.ts";
import { F32_MIN_NORMAL, TWO32 } from "./numeric.ts";
import type { DecodeContext, Mods } from "./operands.ts";

type Num = number | bigint;
type Cmp = (x: Num, y: Num) => boolean;

const INT_CMP = ["eq", "ne", "lt", "le", "gt", "ge", "lo", "ls", "hi", "hs"];
const FLOAT_CMP = ["eq", "ne", "lt", "le", "gt", "ge", "equ", "neu", "ltu", "leu", "gtu", "geu", "num", "nan"];

function same(x: Num, y: Num): boolean {
  return typeof x === typeof y ? x === y : BigInt(x) === BigInt(y);
}

/** Ordered float comparisons are false when either side is NaN; the unordered (..u) ones are true. */
function comparator(op: string): Cmp {
  const nan = (x: Num, y: Num) => Number.isNaN(x) || Number.isNaN(y);
  switch (op) {
    case "eq":
      return (x, y) => same(x, y);
    case "ne":
      return (x, y) => !nan(x, y) && !same(x, y);
    case "lt":
    case "lo":
      return (x, y) => x < y;
    case "le":
    case "ls":
      return (x, y) => x <= y;
    case "gt":
    case "hi":
      return (x, y) => x > y;
    case "ge":
    case "hs":
      return (x, y) => x >= y;
    case "equ":
      return (x, y) => nan(x, y) || x === y;
    case "neu":
      return (x, y) => nan(x, y) || x !== y;
    case "ltu":
      return (x, y) => nan(x, y) || x < y;
    case "leu":
      return (x, y) => nan(x, y) || x <= y;
    case "gtu":
      return (x, y) => nan(x, y) || x > y;
    case "geu":
      return (x, y) => nan(x, y) || x >= y;
    case "num":
      return (x, y) => !nan(x, y);
    case "nan":
      return (x, y) => nan(x, y);
  }
  throw new Error(`internal: comparison ${op}`);
}

/** Reads a value of `type` for comparison or selection; unsigned and bit types read unsigned. */
function valueReader(env: ExecEnv, type: string, s: number, ftz: boolean): (b: number) => Num {
  const { i32, u32, f32, f64, i64 } = env;
  const signed = type[0] === "s";
  switch (type) {
    case "f32":
      return ftz ? (b) => flush(f32[b + s]!) : (b) => f32[b + s]!;
    case "f64":
      return (b) => f64[(b + s) >> 1]!;
  }
  if (type.endsWith("16")) return signed ? (b) => (i32[b + s]! << 16) >> 16 : (b) => i32[b + s]! & 0xffff;
  if (type.endsWith("32")) return signed ? (b) => i32[b + s]! : (b) => u32[b + s]!;
  if (signed)
    return (b) => {
      const hi = i32[b + s + 1]!;
      return hi < 2097152 && hi >= -2097152 ? hi * TWO32 + u32[b + s]! : i64[(b + s) >> 1]!;
    };
  return (b) => {
    const hi = u32[b + s + 1]!;
    return hi < 2097152 ? hi * TWO32 + u32[b + s]! : BigInt.asUintN(64, i64[(b + s) >> 1]!);
  };
}

function flush(x: number): number {
  return x < F32_MIN_NORMAL && x > -F32_MIN_NORMAL ? x * 0 : x;
}

function setp(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const ftz = m.flag("ftz");
  const combine = m.take("and", "or", "xor");
  const types = m.types();
  if (types.length !== 1) ctx.fail("setp needs one type modifier");
  const type = types[0]!;
  const float = type === "f32" || type === "f64";
  if (!float && !/^[bsu](16|32|64)$/.test(type)) ctx.fail(`setp.${type} is not implemented`);
  const op = m.take(...(float ? FLOAT_CMP : INT_CMP));
  if (!op) ctx.fail(`setp needs a comparison (${(float ? FLOAT_CMP : INT_CMP).join(" ")})`);
  m.done();
  if (ftz && type !== "f32") ctx.fail("setp.ftz is only defined for .f32");
  const ops = ctx.operands(combine ? 4 : 3);
  const d = ops[0]!;
  const sp = d.kind === "pair" ? ctx.dst({ kind: "name", name: d.first, offset: 0 }, "pred") : ctx.dst(d, "pred");
  const sq = d.kind === "pair" ? ctx.dst({ kind: "name", name: d.second, offset: 0 }, "pred") : -1;
  const sa = ctx.src(ops[1], type);
  const sb = ctx.src(ops[2], type);
  const c = combine ? ctx.predicate(ops[3]) : undefined;
  const cmp = comparator(op);
  return {
    cls: float ? CLS.floatAlu : CLS.intAlu,
    at: ins.at,
    build(env, next) {
      const { i32, f32, u32 } = env;
      // The common loop-bound and mask comparisons, without the generic reader.
      if (!c && sq < 0 && !ftz && (type === "s32" || type === "u32" || type === "f32")) {
        const view = type === "s32" ? i32 : type === "u32" ? u32 : f32;
        return (b) => {
          i32[b + sp] = cmp(view[b + sa]!, view[b + sb]!) ? 1 : 0;
          return next;
        };
      }
      const ra = valueReader(env, type, sa, ftz);
      const rb = valueReader(env, type, sb, ftz);
      return (b) => {
        const t = cmp(ra(b), rb(b));
        if (!c) {
          i32[b + sp] = t ? 1 : 0;
          if (sq >= 0) i32[b + sq] = t ? 0 : 1;
          return next;
        }
        const cv = (i32[b + c.slot] !== 0) !== c.negate;
        const f =
          combine === "and" ? (x: boolean) => x && cv : combine === "or" ? (x: boolean) => x || cv : (x: boolean) => x !== cv;
        i32[b + sp] = f(t) ? 1 : 0;
        if (sq >= 0) i32[b + sq] = f(!t) ? 1 : 0;
        return next;
      };
    },
  };
}

function selp(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const type = m.type(["b16", "b32", "b64", "u16", "u32", "u64", "s16", "s32", "s64", "f32", "f64"]);
  m.done();
  const [d, a, bb, c] = ctx.operands(4);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sb = ctx.src(bb, type);
  const p = ctx.predicate(c);
  const wide = type.endsWith("64");
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      if (wide)
        return (b) => {
          const s = (i32[b + p.slot] !== 0) !== p.negate ? sa : sb;
          i32[b + sd] = i32[b + s]!;
          i32[b + sd + 1] = i32[b + s + 1]!;
          return next;
        };
      if (p.negate)
        return (b) => {
          i32[b + sd] = i32[b + (i32[b + p.slot] !== 0 ? sb : sa)]!;
          return next;
        };
      return (b) => {
        i32[b + sd] = i32[b + (i32[b + p.slot] !== 0 ? sa : sb)]!;
        return next;
      };
    },
  };
}

function testp(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const op = m.take("finite", "infinite", "number", "notanumber", "normal", "subnormal");
  if (!op) ctx.fail("testp needs .finite .infinite .number .notanumber .normal or .subnormal");
  const type = m.type(["f32", "f64"]);
  m.done();
  const [d, a] = ctx.operands(2);
  const sd = ctx.dst(d, "pred");
  const sa = ctx.src(a, type);
  const minNormal = type === "f32" ? F32_MIN_NORMAL : 2.2250738585072014e-308;
  const test: (x: number) => boolean =
    op === "finite"
      ? Number.isFinite
      : op === "infinite"
        ? (x) => x === Number.POSITIVE_INFINITY || x === Number.NEGATIVE_INFINITY
        : op === "number"
          ? (x) => !Number.isNaN(x)
          : op === "notanumber"
            ? Number.isNaN
            : op === "normal"
              ? (x) => Number.isFinite(x) && Math.abs(x) >= minNormal
              : (x) => x !== 0 && Math.abs(x) < minNormal;
  return {
    cls: CLS.floatAlu,
    at: ins.at,
    build(env, next) {
      const read = valueReader(env, type, sa, false) as (b: number) => number;
      return (b) => {
        env.i32[b + sd] = test(read(b)) ? 1 : 0;
        return next;
      };
    },
  };
}

export function decodeCompare(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  if (m.base === "setp") return setp(ctx, ins, m);
  if (m.base === "selp") return selp(ctx, ins, m);
  return testp(ctx, ins, m);
}
