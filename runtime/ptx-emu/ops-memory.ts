// Loads, stores and atomics: ld/st on .global/.shared/generic (and ld.param) with .v2/.v4 and every scalar
// type up to 64 bits; cache operators, eviction hints, .nc and memory-order qualifiers are accepted and have
// no effect (the emulator is sequentially consistent). atom/red on global and shared memory.

import { resolver, type Space } from "./address.ts";
import type { Instruction } from "./ast.ts";
import { widthOfType } from "./layout.ts";
import { CLS, COUNTER, type Decoded, type ExecEnv } from "./machine.ts";
import type { ByteViews } from "./memory.ts";
import type { DecodeContext, Mods } from "./operands.ts";

const LD_TYPES = [
  "b8",
  "u8",
  "s8",
  "b16",
  "u16",
  "s16",
  "f16",
  "bf16",
  "b32",
  "u32",
  "s32",
  "f32",
  "f16x2",
  "bf16x2",
  "b64",
  "u64",
  "s64",
  "f64",
];
const HINTS =
  /^(ca|cg|cs|lu|cv|wb|wt|nc|weak|volatile|relaxed|acquire|release|cta|gpu|sys|L1::evict_normal|L1::evict_unchanged|L1::evict_first|L1::evict_last|L1::no_allocate|L2::evict_normal|L2::evict_first|L2::evict_last|L2::64B|L2::128B|L2::256B)$/;

function spaceOf(ctx: DecodeContext, m: Mods, allowParam: boolean): Space | "param" {
  const s = m.take("global", "shared", "shared::cta", "param", "param::entry", "local", "const");
  if (s === "local" || s === "const") ctx.fail(`${m.base}.${s} is not implemented by the emulator`);
  if (s === "param" || s === "param::entry") {
    if (!allowParam) ctx.fail(`${m.base}.param is not supported (kernel parameters are read-only)`);
    return "param";
  }
  if (m.match(/^L2::cache_hint$/)) ctx.fail(`${m.base}.L2::cache_hint is not implemented`);
  return s === "global" ? "global" : s === undefined ? "generic" : "shared";
}

function takeHints(m: Mods): void {
  while (m.match(HINTS)) {
    /* performance and ordering hints: no effect in a sequentially consistent emulator */
  }
}

/** Reads element `k` of `size` bytes at byte offset `o` of `v` as an int32 (extended per `signed`). */
function loader(size: number, signed: boolean): (v: ByteViews, o: number) => number {
  if (size === 1) return signed ? (v, o) => v.i8[o]! : (v, o) => v.u8[o]!;
  if (size === 2) return signed ? (v, o) => v.i16[o >> 1]! : (v, o) => v.u16[o >> 1]!;
  return (v, o) => v.i32[o >> 2]!;
}

function ld(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const space = spaceOf(ctx, m, true);
  takeHints(m);
  const vec = m.take("v2", "v4");
  const n = vec === "v4" ? 4 : vec === "v2" ? 2 : 1;
  const type = m.type(LD_TYPES);
  m.done();
  const ops = ctx.operands(2);
  const size = widthOfType(type) / 8;
  const signed = type[0] === "s";
  const wide = { wider: size < 4 || (size === 4 && type[0] !== "f") };
  const dsts = n === 1 ? [ctx.dst(ops[0], type, wide)] : ctx.vector(ops[0], n, type, "dst", wide);
  const regWidths = (n === 1 ? [ops[0]] : (ops[0] as { items: unknown[] }).items).map(
    (o) => ctx.layout.lookup((o as { name: string }).name)!.width,
  );
  const a = ctx.address(ops[1]);
  if (space === "param") {
    if (!a.param || n !== 1) ctx.fail("ld.param needs [param] or [param+offset] with a scalar type");
    return paramLoad(ctx, ins, a.offset, size, signed, dsts[0]!, regWidths[0]!);
  }
  if (a.param) ctx.fail(`parameter ${a.param.name} must be read with ld.param`);
  if (a.sharedVar && space === "global") ctx.fail(`${a.sharedVar} is a shared variable, not a global address`);
  const bytes = size * n;
  const cls = space === "shared" ? CLS.sharedLoad : CLS.globalLoad;
  return {
    cls,
    at: ins.at,
    build(env, next) {
      const { i32, counters } = env;
      const res = resolver(env, space, a, bytes);
      const gv = env.g;
      const sv = env.s;
      const counter = space === "shared" ? COUNTER.sharedLoadBytes : COUNTER.globalLoadBytes;
      if (size === 4 && n === 1 && regWidths[0] === 32 && space !== "generic") {
        const v = space === "shared" ? sv.i32 : gv.i32;
        const d = dsts[0]!;
        return (b) => {
          i32[b + d] = v[res(b) >> 2]!;
          counters[counter]! += 4;
          return next;
        };
      }
      if (size === 4 && regWidths.every((w) => w === 32) && space !== "generic") {
        const v = space === "shared" ? sv.i32 : gv.i32;
        return (b) => {
          const o = res(b) >> 2;
          for (let k = 0; k < n; k++) i32[b + dsts[k]!] = v[o + k]!;
          counters[counter]! += bytes;
          return next;
        };
      }
      const load = loader(size, signed);
      return (b) => {
        let o = res(b);
        let v = space === "shared" ? sv : gv;
        if (o < 0) {
          v = sv;
          o = -o - 1;
        }
        for (let k = 0; k < n; k++) {
          const d = b + dsts[k]!;
          const at = o + k * size;
          if (size === 8) {
            i32[d] = v.i32[at >> 2]!;
            i32[d + 1] = v.i32[(at >> 2) + 1]!;
            continue;
          }
          const x = load(v, at);
          writeExtended(env, d, regWidths[k]!, x, signed);
        }
        counters[o < 0 || space === "shared" ? COUNTER.sharedLoadBytes : COUNTER.globalLoadBytes]! += bytes;
        return next;
      };
    },
  };
}

/** Writes an int32 value loaded from a narrower type into a register of `width` bits. */
function writeExtended(env: ExecEnv, d: number, width: number, x: number, signed: boolean): void {
  if (width === 64) {
    env.i32[d] = x;
    env.i32[d + 1] = signed ? x >> 31 : 0;
  } else env.i32[d] = width === 16 ? x & 0xffff : width === 8 ? x & 0xff : x;
}

function paramLoad(
  ctx: DecodeContext,
  ins: Instruction,
  offset: number,
  size: number,
  signed: boolean,
  d: number,
  regWidth: number,
): Decoded {
  if (offset % size !== 0) ctx.fail(`misaligned ld.param at offset ${offset}`);
  return {
    cls: CLS.paramLoad,
    at: ins.at,
    build(env, next) {
      const p = env.params;
      if (offset + size > p.buffer.byteLength) ctx.fail(`ld.param reads past the end of the parameters`);
      // Parameters are constant for the launch: read once here.
      const lo = size === 8 ? p.i32[offset >> 2]! : loader(size, signed)(p, offset);
      const hi = size === 8 ? p.i32[(offset >> 2) + 1]! : 0;
      const { i32 } = env;
      if (size === 8)
        return (b) => {
          i32[b + d] = lo;
          i32[b + d + 1] = hi;
          return next;
        };
      return (b) => {
        writeExtended(env, b + d, regWidth, lo, signed);
        return next;
      };
    },
  };
}

function st(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const space = spaceOf(ctx, m, false) as Space;
  takeHints(m);
  const vec = m.take("v2", "v4");
  const n = vec === "v4" ? 4 : vec === "v2" ? 2 : 1;
  const type = m.type(LD_TYPES);
  m.done();
  const ops = ctx.operands(2);
  const size = widthOfType(type) / 8;
  const wide = { wider: size < 4 || (size === 4 && type[0] !== "f") };
  const a = ctx.address(ops[0]);
  const srcs = n === 1 ? [ctx.src(ops[1], type, wide)] : ctx.vector(ops[1], n, type, "src", wide);
  if (a.param) ctx.fail("st.param is not supported");
  if (a.sharedVar && space === "global") ctx.fail(`${a.sharedVar} is a shared variable, not a global address`);
  const bytes = size * n;
  return {
    cls: space === "shared" ? CLS.sharedStore : CLS.globalStore,
    at: ins.at,
    build(env, next) {
      const { i32, counters } = env;
      const res = resolver(env, space, a, bytes);
      const gv = env.g;
      const sv = env.s;
      if (size === 4 && space !== "generic") {
        const v = space === "shared" ? sv.i32 : gv.i32;
        const counter = space === "shared" ? COUNTER.sharedStoreBytes : COUNTER.globalStoreBytes;
        if (n === 1) {
          const s0 = srcs[0]!;
          return (b) => {
            v[res(b) >> 2] = i32[b + s0]!;
            counters[counter]! += 4;
            return next;
          };
        }
        return (b) => {
          const o = res(b) >> 2;
          for (let k = 0; k < n; k++) v[o + k] = i32[b + srcs[k]!]!;
          counters[counter]! += bytes;
          return next;
        };
      }
      return (b) => {
        let o = res(b);
        let v = space === "shared" ? sv : gv;
        const toShared = o < 0 || space === "shared";
        if (o < 0) {
          v = sv;
          o = -o - 1;
        }
        for (let k = 0; k < n; k++) {
          const s = b + srcs[k]!;
          const at = o + k * size;
          if (size === 8) {
            v.i32[at >> 2] = i32[s]!;
            v.i32[(at >> 2) + 1] = i32[s + 1]!;
          } else if (size === 4) v.i32[at >> 2] = i32[s]!;
          else if (size === 2) v.u16[at >> 1] = i32[s]! & 0xffff;
          else v.u8[at] = i32[s]! & 0xff;
        }
        counters[toShared ? COUNTER.sharedStoreBytes : COUNTER.globalStoreBytes]! += bytes;
        return next;
      };
    },
  };
}

const ATOM_OPS = ["and", "or", "xor", "exch", "cas", "add", "inc", "dec", "min", "max"];

/** atom/red: read-modify-write; trivially atomic because threads run one at a time. */
function atom(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const isRed = m.base === "red";
  const space = spaceOf(ctx, m, false) as Space;
  takeHints(m);
  const op = m.take(...ATOM_OPS);
  if (!op) ctx.fail(`${m.base} needs an operation (${ATOM_OPS.join(" ")})`);
  const type = m.type(["b32", "u32", "s32", "f32", "b64", "u64", "f64"]);
  m.done();
  if (type.endsWith("64") && !["add", "exch", "cas"].includes(op)) ctx.fail(`${m.base}.${op}.${type} is not implemented`);
  if (op === "cas" && isRed) ctx.fail("red.cas does not exist");
  if (type === "f32" && op !== "add" && op !== "exch") ctx.fail(`${m.base}.${op}.f32 is not implemented`);
  const nOps = (isRed ? 2 : 3) + (op === "cas" ? 1 : 0);
  const ops = ctx.operands(nOps);
  const sd = isRed ? -1 : ctx.dst(ops[0], type);
  const a = ctx.address(ops[isRed ? 0 : 1]);
  const sb = ctx.src(ops[isRed ? 1 : 2], type);
  const sc = op === "cas" ? ctx.src(ops[3], type) : -1;
  const size = widthOfType(type) / 8;
  if (a.param) ctx.fail(`${m.base} on a parameter is not allowed`);
  const signed = type === "s32";
  return {
    cls: CLS.atomic,
    at: ins.at,
    build(env, next) {
      const { i32, u32, f32, f64, counters } = env;
      const res = resolver(env, space, a, size);
      const gv = env.g;
      const sv = env.s;
      return (b) => {
        let o = res(b);
        let v = space === "shared" ? sv : gv;
        const inShared = o < 0 || space === "shared";
        if (o < 0) {
          v = sv;
          o = -o - 1;
        }
        const w = o >> 2;
        if (size === 8) {
          const oldLo = v.i32[w]!;
          const oldHi = v.i32[w + 1]!;
          if (type === "f64") v.f64[o >> 3] = v.f64[o >> 3]! + f64[(b + sb) >> 1]!;
          else if (op === "add") {
            const lo = (oldLo >>> 0) + u32[b + sb]!;
            v.i32[w + 1] = (oldHi + i32[b + sb + 1]! + (lo > 0xffffffff ? 1 : 0)) | 0;
            v.i32[w] = lo | 0;
          } else if (op === "exch" || (oldLo === i32[b + sb] && oldHi === i32[b + sb + 1])) {
            const s = op === "exch" ? sb : sc;
            v.i32[w] = i32[b + s]!;
            v.i32[w + 1] = i32[b + s + 1]!;
          }
          if (sd >= 0) {
            i32[b + sd] = oldLo;
            i32[b + sd + 1] = oldHi;
          }
        } else {
          const old = v.i32[w]!;
          if (type === "f32") {
            if (op === "add") v.f32[w] = v.f32[w]! + f32[b + sb]!;
            else v.i32[w] = i32[b + sb]!;
          } else {
            const x = signed ? i32[b + sb]! : u32[b + sb]!;
            const cur = signed ? old : old >>> 0;
            let r: number;
            switch (op) {
              case "and":
                r = old & x;
                break;
              case "or":
                r = old | x;
                break;
              case "xor":
                r = old ^ x;
                break;
              case "exch":
                r = x;
                break;
              case "cas":
                r = old === i32[b + sb] ? i32[b + sc]! : old;
                break;
              case "add":
                r = cur + x;
                break;
              case "inc":
                r = cur >= x ? 0 : cur + 1;
                break;
              case "dec":
                r = cur === 0 || cur > x ? x : cur - 1;
                break;
              case "min":
                r = Math.min(cur, x);
                break;
              default:
                r = Math.max(cur, x);
            }
            v.i32[w] = r;
          }
          if (sd >= 0) i32[b + sd] = old;
        }
        counters[inShared ? COUNTER.sharedLoadBytes : COUNTER.globalLoadBytes]! += size;
        counters[inShared ? COUNTER.sharedStoreBytes : COUNTER.globalStoreBytes]! += size;
        return next;
      };
    },
  };
}

export function decodeMemory(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  if (m.base === "ld") return ld(ctx, ins, m);
  if (m.base === "st") return st(ctx, ins, m);
  return atom(ctx, ins, m);
}
