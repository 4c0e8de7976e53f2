// Bitwise and logic instructions: and or xor not cnot (on .pred/.b16/.b32/.b64), shl shr, bfe bfi prmt,
// popc clz brev lop3. Semantics follow the PTX ISA pseudo-code (shift counts above the width clamp to it).

import type { Instruction } from "./ast.ts";
import { CLS, type Decoded } from "./machine.ts";
import type { DecodeContext, Mods } from "./operands.ts";

function logic(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const type = m.type(["pred", "b16", "b32", "b64"]);
  m.done();
  const unary = m.base === "not" || m.base === "cnot";
  const ops = ctx.operands(unary ? 2 : 3);
  const sd = ctx.dst(ops[0], type);
  const sa = ctx.src(ops[1], type);
  const sc = unary ? sa : ctx.src(ops[2], type);
  const words = type === "b64" ? 2 : 1;
  const mask = type === "pred" ? 1 : type === "b16" ? 0xffff : -1;
  const op = m.base;
  if (op === "cnot" && type === "pred") ctx.fail("cnot is not defined for .pred");
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      if (op === "cnot") {
        if (words === 2)
          return (b) => {
            const z = i32[b + sa]! === 0 && i32[b + sa + 1]! === 0;
            i32[b + sd] = z ? 1 : 0;
            i32[b + sd + 1] = 0;
            return next;
          };
        return (b) => {
          i32[b + sd] = i32[b + sa]! === 0 ? 1 : 0;
          return next;
        };
      }
      const f =
        op === "and"
          ? (x: number, y: number) => x & y
          : op === "or"
            ? (x: number, y: number) => x | y
            : op === "xor"
              ? (x: number, y: number) => x ^ y
              : (x: number, _y: number) => ~x & mask;
      if (words === 2)
        return (b) => {
          i32[b + sd] = f(i32[b + sa]!, i32[b + sc]!);
          i32[b + sd + 1] = f(i32[b + sa + 1]!, i32[b + sc + 1]!);
          return next;
        };
      if (op === "and")
        return (b) => {
          i32[b + sd] = i32[b + sa]! & i32[b + sc]!;
          return next;
        };
      if (op === "or")
        return (b) => {
          i32[b + sd] = i32[b + sa]! | i32[b + sc]!;
          return next;
        };
      if (op === "xor")
        return (b) => {
          i32[b + sd] = i32[b + sa]! ^ i32[b + sc]!;
          return next;
        };
      return (b) => {
        i32[b + sd] = ~i32[b + sa]! & mask;
        return next;
      };
    },
  };
}

function shift(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const left = m.base === "shl";
  const type = m.type(left ? ["b16", "b32", "b64"] : ["b16", "b32", "b64", "u16", "u32", "u64", "s16", "s32", "s64"]);
  m.done();
  const [d, a, c] = ctx.operands(3);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sn = ctx.src(c, "u32");
  const arith = type[0] === "s";
  const w = type.endsWith("64") ? 64 : type.endsWith("16") ? 16 : 32;
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, u32 }, next) {
      if (w === 64) {
        return (b) => {
          const n = u32[b + sn]!;
          const lo = i32[b + sa]!;
          const hi = i32[b + sa + 1]!;
          let rlo: number;
          let rhi: number;
          if (n === 0) {
            rlo = lo;
            rhi = hi;
          } else if (left) {
            if (n >= 64) rlo = rhi = 0;
            else if (n >= 32) {
              rhi = lo << (n - 32);
              rlo = 0;
            } else {
              rhi = (hi << n) | (lo >>> (32 - n));
              rlo = lo << n;
            }
          } else if (n >= 64) {
            rlo = rhi = arith ? hi >> 31 : 0;
          } else if (n >= 32) {
            rlo = arith ? hi >> (n - 32) : hi >>> (n - 32);
            rhi = arith ? hi >> 31 : 0;
          } else {
            rlo = (lo >>> n) | (hi << (32 - n));
            rhi = arith ? hi >> n : hi >>> n;
          }
          i32[b + sd] = rlo;
          i32[b + sd + 1] = rhi;
          return next;
        };
      }
      if (w === 16) {
        return (b) => {
          const n = u32[b + sn]!;
          const x = arith ? (i32[b + sa]! << 16) >> 16 : i32[b + sa]! & 0xffff;
          const r = left ? (n >= 16 ? 0 : x << n) : n >= 16 ? (arith ? x >> 15 : 0) : arith ? x >> n : x >>> n;
          i32[b + sd] = r & 0xffff;
          return next;
        };
      }
      if (left)
        return (b) => {
          i32[b + sd] = u32[b + sn]! >= 32 ? 0 : i32[b + sa]! << u32[b + sn]!;
          return next;
        };
      if (arith)
        return (b) => {
          i32[b + sd] = i32[b + sa]! >> Math.min(u32[b + sn]!, 31);
          return next;
        };
      return (b) => {
        i32[b + sd] = u32[b + sn]! >= 32 ? 0 : i32[b + sa]! >>> u32[b + sn]!;
        return next;
      };
    },
  };
}

/** bfe: extract len bits at pos, sign-filling for signed types (PTX ISA pseudo-code, 32-bit only). */
function bfe(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const type = m.type(["u32", "s32"]);
  m.done();
  const [d, a, p, l] = ctx.operands(4);
  const sd = ctx.dst(d, type);
  const sa = ctx.src(a, type);
  const sp = ctx.src(p, "u32");
  const sl = ctx.src(l, "u32");
  const signed = type === "s32";
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, u32 }, next) {
      return (b) => {
        const x = i32[b + sa]!;
        const pos = u32[b + sp]! & 0xff;
        const len = u32[b + sl]! & 0xff;
        const top = Math.min(pos + len - 1, 31);
        const sbit = signed && top >= 0 ? (x >>> top) & 1 : 0;
        let r = 0;
        for (let i = 0; i < 32; i++) {
          const bit = i < len && pos + i <= 31 ? (x >>> (pos + i)) & 1 : sbit;
          r |= bit << i;
        }
        i32[b + sd] = r;
        return next;
      };
    },
  };
}

/** bfi: insert the low len bits of a into b at pos. */
function bfi(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.type(["b32"]);
  m.done();
  const [f, a, bb, p, l] = ctx.operands(5);
  const sf = ctx.dst(f, "b32");
  const sa = ctx.src(a, "b32");
  const sb = ctx.src(bb, "b32");
  const sp = ctx.src(p, "u32");
  const sl = ctx.src(l, "u32");
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, u32 }, next) {
      return (b) => {
        const pos = u32[b + sp]! & 0xff;
        const len = u32[b + sl]! & 0xff;
        let r = i32[b + sb]!;
        const x = i32[b + sa]!;
        for (let i = 0; i < len && pos + i <= 31; i++) r = (r & ~(1 << (pos + i))) | (((x >>> i) & 1) << (pos + i));
        i32[b + sf] = r;
        return next;
      };
    },
  };
}

/** prmt (default mode): pick 4 bytes from {b, a}; selector bit 3 replicates the picked byte's sign. */
function prmt(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.type(["b32"]);
  m.done();
  const [d, a, bb, c] = ctx.operands(4);
  const sd = ctx.dst(d, "b32");
  const sa = ctx.src(a, "b32");
  const sb = ctx.src(bb, "b32");
  const sc = ctx.src(c, "b32");
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32, u32 }, next) {
      return (b) => {
        const lo = u32[b + sa]!;
        const hi = u32[b + sb]!;
        const sel = u32[b + sc]!;
        let r = 0;
        for (let i = 0; i < 4; i++) {
          const s = (sel >>> (4 * i)) & 0xf;
          const k = s & 7;
          let byte = ((k < 4 ? lo : hi) >>> (8 * (k & 3))) & 0xff;
          if (s & 8) byte = byte & 0x80 ? 0xff : 0;
          r |= byte << (8 * i);
        }
        i32[b + sd] = r;
        return next;
      };
    },
  };
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

function reverse32(x: number): number {
  let r = 0;
  for (let i = 0; i < 32; i++) r |= ((x >>> i) & 1) << (31 - i);
  return r;
}

function bitCount(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const type = m.type(["b32", "b64"]);
  m.done();
  const [d, a] = ctx.operands(2);
  const op = m.base;
  const wide = type === "b64";
  const sd = ctx.dst(d, op === "brev" ? type : "u32");
  const sa = ctx.src(a, type);
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      if (op === "popc")
        return (b) => {
          i32[b + sd] = popcount32(i32[b + sa]!) + (wide ? popcount32(i32[b + sa + 1]!) : 0);
          return next;
        };
      if (op === "clz")
        return (b) => {
          i32[b + sd] = wide
            ? i32[b + sa + 1]! !== 0
              ? Math.clz32(i32[b + sa + 1]!)
              : 32 + Math.clz32(i32[b + sa]!)
            : Math.clz32(i32[b + sa]!);
          return next;
        };
      return (b) => {
        if (wide) {
          const lo = i32[b + sa]!;
          i32[b + sd] = reverse32(i32[b + sa + 1]!);
          i32[b + sd + 1] = reverse32(lo);
        } else i32[b + sd] = reverse32(i32[b + sa]!);
        return next;
      };
    },
  };
}

/** lop3: an arbitrary 3-input logic function given by its 8-bit truth table. */
function lop3(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.type(["b32"]);
  m.done();
  const [d, a, bb, c, lut] = ctx.operands(5);
  const sd = ctx.dst(d, "b32");
  const sa = ctx.src(a, "b32");
  const sb = ctx.src(bb, "b32");
  const sc = ctx.src(c, "b32");
  const table = ctx.literal(lut) & 0xff;
  return {
    cls: CLS.intAlu,
    at: ins.at,
    build({ i32 }, next) {
      return (b) => {
        const x = i32[b + sa]!;
        const y = i32[b + sb]!;
        const z = i32[b + sc]!;
        let r = 0;
        // The table is indexed by (a<<2 | b<<1 | c): 0xF0 is a, 0xCC is b, 0xAA is c.
        for (let i = 0; i < 8; i++) if ((table >>> i) & 1) r |= (i & 4 ? x : ~x) & (i & 2 ? y : ~y) & (i & 1 ? z : ~z);
        i32[b + sd] = r;
        return next;
      };
    },
  };
}

export const BIT_OPS = ["and", "or", "xor", "not", "cnot", "shl", "shr", "bfe", "bfi", "prmt", "popc", "clz", "brev", "lop3"];

export function decodeBits(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  switch (m.base) {
    case "and":
    case "or":
    case "xor":
    case "not":
    case "cnot":
      return logic(ctx, ins, m);
    case "shl":
    case "shr":
      return shift(ctx, ins, m);
    case "bfe":
      return bfe(ctx, ins, m);
    case "bfi":
      return bfi(ctx, ins, m);
    case "prmt":
      if (m.match(/^(f4e|b4e|rc8|ecl|ecr|rc16)$/)) ctx.fail("prmt modes (.f4e .b4e .rc8 .ecl .ecr .rc16) are not implemented");
      return prmt(ctx, ins, m);
    case "popc":
    case "clz":
    case "brev":
      return bitCount(ctx, ins, m);
    case "lop3":
      return lop3(ctx, ins, m);
  }
  return ctx.fail(`${m.base} is not a bit instruction`);
}
