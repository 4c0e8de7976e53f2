// Floating point arithmetic on .f32 (and the common .f64 forms): add sub mul fma mad div min max abs neg
// copysign, and the special functions rcp sqrt rsqrt ex2 lg2 tanh sin cos.
//
// Rounding: an f32 register is a Float32Array element, so storing a double result rounds it to nearest even.
// For + - * / and sqrt of f32 operands, computing in double and rounding once to f32 is exact (the double
// has more than 2*24+2 bits). fma needs a TwoSum fix-up (numeric.ts). `.approx` functions are computed as the
// correctly rounded f32 of the double-precision function: the hardware differs from that by its documented
// ulp error, so tests of approximate functions need a tolerance.

import type { Instruction } from "./ast.ts";
import { CLS, type Decoded } from "./machine.ts";
import { fmaF32, flushSubnormal as ftzOf, type RoundMode, roundToF32, twoSumError } from "./numeric.ts";
import type { DecodeContext, Mods } from "./operands.ts";

const ROUNDINGS = ["rn", "rz", "rm", "rp"];

function sat01(r: number): number {
  return r > 0 ? Math.min(r, 1) : 0;
}

interface FloatMods {
  type: "f32" | "f64";
  round: RoundMode | undefined;
  ftz: boolean;
  sat: boolean;
}

function floatMods(ctx: DecodeContext, m: Mods, allowed: { round?: boolean; sat?: boolean; types?: string[] } = {}): FloatMods {
  const round = m.take(...ROUNDINGS) as RoundMode | undefined;
  const ftz = m.flag("ftz");
  const sat = m.flag("sat");
  const type = m.type(allowed.types ?? ["f32", "f64"]) as "f32" | "f64";
  if (round && allowed.round === false) ctx.fail(`${m.base} takes no rounding modifier`);
  if (sat && (allowed.sat === false || type === "f64")) ctx.fail(`${m.base}.sat is not defined for .${type}`);
  if (ftz && type === "f64") ctx.fail(`${m.base}.ftz is not defined for .f64`);
  return { type, round, ftz, sat };
}

/**
 * A unary or binary float op: `f` computes in double; the result is rounded to the destination type, then
 * `.ftz`/`.sat` are applied (inputs are flushed first under `.ftz`).
 */
function floatOp(
  ctx: DecodeContext,
  ins: Instruction,
  fm: FloatMods,
  arity: 1 | 2 | 3,
  f: (...xs: number[]) => number,
  cls = CLS.floatAlu,
): Decoded {
  const ops = ctx.operands(arity + 1);
  const t = fm.type;
  const sd = ctx.dst(ops[0], t);
  const ss = ops.slice(1).map((o) => ctx.src(o, t));
  const [s1, s2, s3] = [ss[0]!, ss[1] ?? 0, ss[2] ?? 0];
  const { ftz, sat } = fm;
  return {
    cls,
    at: ins.at,
    build({ f32, f64 }, next) {
      if (t === "f64") {
        if (arity === 1)
          return (b) => {
            f64[(b + sd) >> 1] = f(f64[(b + s1) >> 1]!);
            return next;
          };
        if (arity === 2)
          return (b) => {
            f64[(b + sd) >> 1] = f(f64[(b + s1) >> 1]!, f64[(b + s2) >> 1]!);
            return next;
          };
        return (b) => {
          f64[(b + sd) >> 1] = f(f64[(b + s1) >> 1]!, f64[(b + s2) >> 1]!, f64[(b + s3) >> 1]!);
          return next;
        };
      }
      const post = (r: number): number => {
        let v = Math.fround(r);
        if (ftz) v = ftzOf(v);
        return sat ? sat01(v) : v;
      };
      const pre = ftz ? ftzOf : (x: number) => x;
      if (!ftz && !sat) {
        if (arity === 1)
          return (b) => {
            f32[b + sd] = f(f32[b + s1]!);
            return next;
          };
        if (arity === 2)
          return (b) => {
            f32[b + sd] = f(f32[b + s1]!, f32[b + s2]!);
            return next;
          };
        return (b) => {
          f32[b + sd] = f(f32[b + s1]!, f32[b + s2]!, f32[b + s3]!);
          return next;
        };
      }
      if (arity === 1)
        return (b) => {
          f32[b + sd] = post(f(pre(f32[b + s1]!)));
          return next;
        };
      if (arity === 2)
        return (b) => {
          f32[b + sd] = post(f(pre(f32[b + s1]!), pre(f32[b + s2]!)));
          return next;
        };
      return (b) => {
        f32[b + sd] = post(f(pre(f32[b + s1]!), pre(f32[b + s2]!), pre(f32[b + s3]!)));
        return next;
      };
    },
  };
}

/** add/sub/mul f32 with round-to-nearest and no ftz/sat: the hottest float ops get their own closures. */
function fastBinary(ctx: DecodeContext, ins: Instruction, op: string): Decoded {
  const [d, a, c] = ctx.operands(3);
  const sd = ctx.dst(d, "f32");
  const sa = ctx.src(a, "f32");
  const sc = ctx.src(c, "f32");
  return {
    cls: CLS.floatAlu,
    at: ins.at,
    build({ f32 }, next) {
      if (op === "add")
        return (b) => {
          f32[b + sd] = f32[b + sa]! + f32[b + sc]!;
          return next;
        };
      if (op === "sub")
        return (b) => {
          f32[b + sd] = f32[b + sa]! - f32[b + sc]!;
          return next;
        };
      return (b) => {
        f32[b + sd] = f32[b + sa]! * f32[b + sc]!;
        return next;
      };
    },
  };
}

function directed(op: string, mode: RoundMode): (x: number, y: number) => number {
  if (op === "mul") return (x, y) => roundToF32(x * y, 0, mode); // an f32 product is exact in double
  const sign = op === "sub" ? -1 : 1;
  return (x, y) => {
    const yy = sign * y;
    const s = x + yy;
    // IEEE: an exact zero sum of opposite signs (or cancellation) is -0 when rounding down, +0 otherwise.
    if (s === 0) return x === 0 && yy === 0 && Object.is(x, yy) ? x : mode === "rm" ? -0 : 0;
    return Number.isFinite(s) ? roundToF32(s, twoSumError(x, yy, s), mode) : s;
  };
}

function minMax(max: boolean, nanPropagating: boolean): (x: number, y: number) => number {
  const pick = max ? Math.max : Math.min; // Math.min/max order -0 below +0, as PTX does
  if (nanPropagating) return (x, y) => pick(x, y);
  return (x, y) => (Number.isNaN(x) ? y : Number.isNaN(y) ? x : pick(x, y));
}

/**
 * abs/neg change only the sign bit, except of a NaN: the hardware returns its canonical NaN then (0x7fffffff
 * for f32, 0x7ff8000000000000 for f64; observed on an H200 running sm_80 PTX).
 */
function signOp(ctx: DecodeContext, ins: Instruction, fm: FloatMods, neg: boolean): Decoded {
  const [d, a] = ctx.operands(2);
  const sd = ctx.dst(d, fm.type);
  const sa = ctx.src(a, fm.type);
  const hiWord = fm.type === "f64" ? 1 : 0;
  const { ftz } = fm;
  return {
    cls: CLS.floatAlu,
    at: ins.at,
    build({ i32, f32 }, next) {
      if (ftz)
        return (b) => {
          const x = ftzOf(f32[b + sa]!);
          f32[b + sd] = neg ? -x : Math.abs(x);
          return next;
        };
      return (b) => {
        const lo = i32[b + sa]!;
        const hi = i32[b + sa + hiWord]!;
        const exp = hiWord ? 0x7ff00000 : 0x7f800000;
        if ((hi & exp) === exp && ((hi & (hiWord ? 0xfffff : 0x7fffff)) !== 0 || (hiWord && lo !== 0))) {
          i32[b + sd] = hiWord ? 0 : 0x7fffffff;
          if (hiWord) i32[b + sd + 1] = 0x7ff80000;
          return next;
        }
        if (hiWord) i32[b + sd] = lo;
        i32[b + sd + hiWord] = neg ? hi ^ 0x80000000 : hi & 0x7fffffff;
        return next;
      };
    },
  };
}

function approxOrRn(ctx: DecodeContext, m: Mods, kinds: string[]): string {
  const k = m.take(...kinds);
  if (!k) ctx.fail(`${m.base} needs one of ${kinds.map((x) => `.${x}`).join(" ")}`);
  return k;
}

export const FLOAT_ONLY_OPS = ["fma", "rcp", "sqrt", "rsqrt", "ex2", "lg2", "tanh", "sin", "cos", "copysign"];

export function decodeFloat(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const op = m.base;
  switch (op) {
    case "add":
    case "sub":
    case "mul": {
      const fm = floatMods(ctx, m);
      m.done();
      const mode = fm.round ?? "rn";
      if (fm.type === "f32" && mode === "rn" && !fm.ftz && !fm.sat) return fastBinary(ctx, ins, op);
      if (fm.type === "f64") {
        if (mode !== "rn") ctx.fail(`${op}.${mode}.f64 is not implemented (only .rn)`);
        return floatOp(ctx, ins, fm, 2, op === "add" ? (x, y) => x + y : op === "sub" ? (x, y) => x - y : (x, y) => x * y);
      }
      const f =
        mode === "rn"
          ? op === "add"
            ? (x: number, y: number) => x + y
            : op === "sub"
              ? (x: number, y: number) => x - y
              : (x: number, y: number) => x * y
          : directed(op, mode);
      return floatOp(ctx, ins, fm, 2, f);
    }
    case "fma":
    case "mad": {
      const fm = floatMods(ctx, m);
      m.done();
      if (!fm.round) ctx.fail(`${op}.${fm.type} requires a rounding modifier (.rn .rz .rm .rp), as ptxas does`);
      if (fm.type === "f64") ctx.fail(`${op}.f64 is not implemented`);
      const mode = fm.round;
      return floatOp(ctx, ins, fm, 3, (x, y, z) => fmaF32(x, y, z, mode));
    }
    case "div": {
      const kind = m.take("approx", "full");
      const fm = floatMods(ctx, m);
      m.done();
      if (!kind && fm.round !== "rn")
        ctx.fail(`div.${fm.type} needs .rn, .approx or .full (directed roundings are not implemented)`);
      if (kind && fm.type === "f64") ctx.fail(`div.${kind}.f64 is not defined`);
      return floatOp(ctx, ins, fm, 2, (x, y) => x / y);
    }
    case "min":
    case "max": {
      const nan = m.flag("NaN");
      const fm = floatMods(ctx, m, { round: false, sat: false });
      m.done();
      return floatOp(ctx, ins, fm, 2, minMax(op === "max", nan));
    }
    case "abs":
    case "neg": {
      const fm = floatMods(ctx, m, { round: false, sat: false });
      m.done();
      return signOp(ctx, ins, fm, op === "neg");
    }
    case "copysign": {
      m.type(["f32"]);
      m.done();
      // d = b with the sign of a, on the bits so that NaNs keep their payload
      const [d, a, c] = ctx.operands(3);
      const sd = ctx.dst(d, "f32");
      const sa = ctx.src(a, "f32");
      const sc = ctx.src(c, "f32");
      return {
        cls: CLS.floatAlu,
        at: ins.at,
        build:
          ({ i32 }, next) =>
          (b) => {
            i32[b + sd] = (i32[b + sc]! & 0x7fffffff) | (i32[b + sa]! & 0x80000000);
            return next;
          },
      };
    }
    case "rcp":
    case "sqrt": {
      const kind = m.take("approx") ?? approxOrRn(ctx, m, ["rn"]);
      const fm = floatMods(ctx, m, { sat: false });
      m.done();
      if (kind === "approx" && fm.round) ctx.fail(`${op}.approx takes no rounding modifier`);
      return floatOp(ctx, ins, fm, 1, op === "rcp" ? (x) => 1 / x : Math.sqrt, CLS.specialFunction);
    }
    case "rsqrt":
    case "ex2":
    case "lg2":
    case "tanh":
    case "sin":
    case "cos": {
      m.require("approx");
      const fm = floatMods(ctx, m, { round: false, sat: false, types: op === "rsqrt" ? ["f32", "f64"] : ["f32"] });
      m.done();
      const f =
        op === "rsqrt"
          ? (x: number) => 1 / Math.sqrt(x)
          : op === "ex2"
            ? (x: number) => 2 ** x
            : op === "lg2"
              ? Math.log2
              : op === "tanh"
                ? Math.tanh
                : op === "sin"
                  ? Math.sin
                  : Math.cos;
      return floatOp(ctx, ins, fm, 1, f, CLS.specialFunction);
    }
  }
  return ctx.fail(`${op} is not a floating point instruction`);
}
