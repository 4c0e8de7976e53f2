// One parsed instruction -> Decoded (checked operands and modifiers, a builder of per-thread code). Every
// opcode the emulator knows is listed here; anything else is a parse-time error naming it and its line.

import type { Instruction } from "./ast.ts";
import type { RegisterLayout } from "./layout.ts";
import type { Decoded } from "./machine.ts";
import { DecodeContext, type KernelSymbols } from "./operands.ts";
import { decodeAsync } from "./ops-async.ts";
import { BIT_OPS, decodeBits } from "./ops-bits.ts";
import { decodeCompare } from "./ops-compare.ts";
import { decodeControl } from "./ops-control.ts";
import { decodeMove } from "./ops-convert.ts";
import { decodeFloat, FLOAT_ONLY_OPS } from "./ops-float.ts";
import { decodeIntArith } from "./ops-int.ts";
import { decodeMatrix } from "./ops-matrix.ts";
import { decodeMemory } from "./ops-memory.ts";
import { decodeWarp } from "./ops-warp.ts";

const ARITH_OPS = new Set(["add", "sub", "mul", "mad", "div", "rem", "min", "max", "abs", "neg"]);

function dispatch(ctx: DecodeContext, ins: Instruction): Decoded {
  const m = ctx.mods();
  const base = m.base;
  const parts = ins.opcode.split(".");
  if (ARITH_OPS.has(base)) {
    if (parts.includes("f32") || parts.includes("f64")) return decodeFloat(ctx, ins, m);
    if (parts.some((p) => /^(f16|bf16|f16x2|bf16x2)$/.test(p)))
      ctx.fail(`${ins.opcode}: f16/bf16 arithmetic is not implemented (convert to f32)`);
    return decodeIntArith(ctx, ins, m);
  }
  if (FLOAT_ONLY_OPS.includes(base)) return decodeFloat(ctx, ins, m);
  if (BIT_OPS.includes(base)) return decodeBits(ctx, ins, m);
  switch (base) {
    case "mov":
    case "cvt":
    case "cvta":
      return decodeMove(ctx, ins, m);
    case "setp":
    case "selp":
    case "testp":
      return decodeCompare(ctx, ins, m);
    case "ld":
    case "st":
    case "atom":
    case "red":
      return decodeMemory(ctx, ins, m);
    case "cp":
      return decodeAsync(ctx, ins, m);
    case "bra":
    case "ret":
    case "exit":
    case "bar":
    case "barrier":
    case "membar":
    case "fence":
      return decodeControl(ctx, ins, m);
    case "shfl":
    case "vote":
      return decodeWarp(ctx, ins, m);
    case "mma":
    case "ldmatrix":
      return decodeMatrix(ctx, ins, m);
  }
  return ctx.fail(`instruction '${base}' is not implemented by the PTX emulator`);
}

export function decodeInstruction(ins: Instruction, layout: RegisterLayout, symbols: KernelSymbols, fileName: string): Decoded {
  const ctx = new DecodeContext(layout, symbols, ins, fileName);
  const decoded = dispatch(ctx, ins);
  const guard = ins.guard;
  if (!guard) return decoded;
  // `@%p` / `@!%p`: a thread whose guard is false skips the instruction (and does not join a collective).
  const g = ctx.predicate({ kind: "name", name: guard.name, offset: 0 }).slot;
  const inner = decoded.build;
  return {
    ...decoded,
    build(env, next) {
      const run = inner(env, next);
      const { i32 } = env;
      if (guard.negate) return (b) => (i32[b + g] !== 0 ? next : run(b));
      return (b) => (i32[b + g] !== 0 ? run(b) : next);
    },
  };
}
