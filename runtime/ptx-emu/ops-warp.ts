// Warp shuffles and votes, executed once for the warp when every lane of the membermask has arrived.
//
// shfl.sync.mode.b32 d[|p], a, b, c, membermask (PTX ISA pseudo-code, per lane):
//   bval = b[4:0]; cval = c[4:0]; segmask = c[12:8]
//   maxLane = (lane & segmask) | (cval & ~segmask); minLane = lane & segmask
//   up:   j = lane - bval; pval = j >= maxLane
//   down: j = lane + bval; pval = j <= maxLane
//   bfly: j = lane ^ bval; pval = j <= maxLane
//   idx:  j = minLane | (bval & ~segmask); pval = j <= maxLane
//   if !pval: j = lane;  d = a of lane j;  p = pval
// Reading a lane outside the membermask is undefined in PTX: here it is an error.

import type { Instruction } from "./ast.ts";
import { Fault } from "./errors.ts";
import { BLOCKED, CLS, type Decoded } from "./machine.ts";
import type { DecodeContext, Mods } from "./operands.ts";

function shfl(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.require("sync");
  const mode = m.take("up", "down", "bfly", "idx");
  if (!mode) ctx.fail("shfl.sync needs .up, .down, .bfly or .idx");
  m.type(["b32"]);
  m.done();
  const [d, a, bb, c, mask] = ctx.operands(5);
  const sd = d?.kind === "pair" ? ctx.dst({ kind: "name", name: d.first, offset: 0 }, "b32") : ctx.dst(d, "b32");
  const sp = d?.kind === "pair" ? ctx.dst({ kind: "name", name: d.second, offset: 0 }, "pred") : -1;
  const sa = ctx.src(a, "b32");
  const sb = ctx.src(bb, "b32");
  const sc = ctx.src(c, "b32");
  const maskSlot = ctx.src(mask, "b32");
  return {
    cls: CLS.controlSync,
    at: ins.at,
    build: () => () => BLOCKED,
    collective: {
      name: `shfl.sync.${mode}`,
      aligned: false,
      maskSlot,
      build({ i32 }) {
        const value = new Int32Array(32);
        const from = new Int32Array(32);
        const ok = new Uint8Array(32);
        return (bases, memberMask) => {
          for (let lane = 0; lane < 32; lane++) {
            const b = bases[lane]!;
            if (b < 0) continue;
            value[lane] = i32[b + sa]!;
            const bval = i32[b + sb]! & 0x1f;
            const cw = i32[b + sc]!;
            const cval = cw & 0x1f;
            const segmask = (cw >>> 8) & 0x1f;
            const maxLane = (lane & segmask) | (cval & ~segmask);
            const minLane = lane & segmask;
            let j: number;
            let pval: boolean;
            if (mode === "up") {
              j = lane - bval;
              pval = j >= maxLane;
            } else if (mode === "down") {
              j = lane + bval;
              pval = j <= maxLane;
            } else if (mode === "bfly") {
              j = lane ^ bval;
              pval = j <= maxLane;
            } else {
              j = minLane | (bval & ~segmask);
              pval = j <= maxLane;
            }
            if (!pval) j = lane;
            if (((memberMask >>> j) & 1) === 0)
              throw new Fault(
                `shfl.sync: lane ${lane} reads lane ${j}, which is not in the membermask 0x${(memberMask >>> 0).toString(16)}`,
              );
            from[lane] = j;
            ok[lane] = pval ? 1 : 0;
          }
          for (let lane = 0; lane < 32; lane++) {
            const b = bases[lane]!;
            if (b < 0) continue;
            i32[b + sd] = value[from[lane]!]!;
            if (sp >= 0) i32[b + sp] = ok[lane]!;
          }
        };
      },
    },
  };
}

function vote(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.require("sync");
  const mode = m.take("all", "any", "uni", "ballot");
  if (!mode) ctx.fail("vote.sync needs .all, .any, .uni or .ballot");
  m.type(mode === "ballot" ? ["b32"] : ["pred"]);
  m.done();
  const [d, a, mask] = ctx.operands(3);
  const sd = ctx.dst(d, mode === "ballot" ? "b32" : "pred");
  const p = ctx.predicate(a);
  const maskSlot = ctx.src(mask, "b32");
  return {
    cls: CLS.controlSync,
    at: ins.at,
    build: () => () => BLOCKED,
    collective: {
      name: `vote.sync.${mode}`,
      aligned: false,
      maskSlot,
      build({ i32 }) {
        return (bases) => {
          let ballot = 0;
          let lanes = 0;
          for (let lane = 0; lane < 32; lane++) {
            const b = bases[lane]!;
            if (b < 0) continue;
            lanes |= 1 << lane;
            if ((i32[b + p.slot] !== 0) !== p.negate) ballot |= 1 << lane;
          }
          const result =
            mode === "ballot"
              ? ballot
              : mode === "all"
                ? +(ballot === lanes)
                : mode === "any"
                  ? +(ballot !== 0)
                  : +(ballot === 0 || ballot === lanes);
          for (let lane = 0; lane < 32; lane++) {
            const b = bases[lane]!;
            if (b >= 0) i32[b + sd] = result;
          }
        };
      },
    },
  };
}

export function decodeWarp(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  return m.base === "shfl" ? shfl(ctx, ins, m) : vote(ctx, ins, m);
}
