// Control flow and synchronisation: bra, ret, exit, bar.sync/barrier.sync (CTA barriers, rendezvoused by the
// scheduler), bar.warp.sync (a warp rendezvous), and membar/fence (no effect: the emulator runs one thread
// at a time, so every access is already ordered).

import type { Instruction } from "./ast.ts";
import { BLOCKED, CLS, type Decoded, EXITED } from "./machine.ts";
import type { DecodeContext, Mods } from "./operands.ts";

function bra(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.flag("uni");
  m.done();
  const target = ctx.label(ctx.operands(1)[0]);
  return { cls: CLS.controlSync, at: ins.at, build: () => () => target };
}

function exit(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.flag("uni");
  m.done();
  ctx.operands(0);
  return { cls: CLS.controlSync, at: ins.at, build: () => () => EXITED };
}

/** bar.sync / bar.cta.sync / barrier.sync(.aligned) id{, count}; arrive and red forms are not implemented. */
function barrier(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.flag("cta");
  if (m.take("arrive", "red")) ctx.fail(`${ins.opcode} is not implemented (only the .sync form)`);
  if (m.flag("warp")) return warpSync(ctx, ins, m);
  if (!m.flag("sync")) ctx.fail(`${ins.opcode} is not implemented (only ${m.base}.sync)`);
  m.flag("aligned");
  m.done();
  const ops = ctx.operands(1, 2);
  const idSlot = ctx.src(ops[0], "u32");
  const countSlot = ops[1] ? ctx.src(ops[1], "u32") : undefined;
  return { cls: CLS.controlSync, at: ins.at, build: () => () => BLOCKED, barrier: { idSlot, countSlot } };
}

function warpSync(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.require("sync");
  m.done();
  const maskSlot = ctx.src(ctx.operands(1)[0], "b32");
  return {
    cls: CLS.controlSync,
    at: ins.at,
    build: () => () => BLOCKED,
    collective: { name: "bar.warp.sync", aligned: false, maskSlot, build: () => () => {} },
  };
}

function fence(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  m.match(/^(cta|gl|gpu|sys|sc|acq_rel)$/);
  m.match(/^(cta|gl|gpu|sys|sc|acq_rel)$/);
  m.done();
  ctx.operands(0);
  return { cls: CLS.controlSync, at: ins.at, build: (_env, next) => () => next };
}

export function decodeControl(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  switch (m.base) {
    case "bra":
      return bra(ctx, ins, m);
    case "ret":
    case "exit":
      return exit(ctx, ins, m);
    case "bar":
    case "barrier":
      return barrier(ctx, ins, m);
    case "membar":
    case "fence":
      return fence(ctx, ins, m);
  }
  return ctx.fail(`${m.base} is not a control instruction`);
}
