// cp.async global -> shared copies and their groups. A copy is checked (bounds, alignment) when issued but its
// data lands in shared memory only when the issuing thread waits for its group (cp.async.wait_group N /
// wait_all): a kernel that reads shared memory before the wait sees stale data, as it may on the hardware.
// Note that bar.sync does not complete copies either; only the waits do (and thread exit).

import { addressReader } from "./address.ts";
import type { Instruction } from "./ast.ts";
import { Fault } from "./errors.ts";
import { CLS, COUNTER, type Decoded, type ExecEnv } from "./machine.ts";
import type { DecodeContext, Mods } from "./operands.ts";

/** Apply a flat list of copies [sharedOffset, globalOffset, bytes, srcBytes, ...] in issue order. */
function applyCopies(env: ExecEnv, copies: number[]): void {
  const s = env.s.u8;
  const g = env.g.u8;
  for (let i = 0; i < copies.length; i += 4) {
    const dst = copies[i]!;
    const src = copies[i + 1]!;
    const bytes = copies[i + 2]!;
    const srcBytes = copies[i + 3]!;
    for (let k = 0; k < srcBytes; k++) s[dst + k] = g[src + k]!;
    for (let k = srcBytes; k < bytes; k++) s[dst + k] = 0;
    env.counters[COUNTER.globalLoadBytes]! += srcBytes;
    env.counters[COUNTER.sharedStoreBytes]! += bytes;
  }
}

/** Complete all but the `keep` most recent committed groups of thread t (keep = -1: everything, uncommitted too). */
export function completeCopies(env: ExecEnv, t: number, keep: number): void {
  const groups = env.async.groups[t]!;
  while (groups.length > Math.max(keep, 0)) applyCopies(env, groups.shift()!);
  if (keep < 0) {
    const pending = env.async.pending[t]!;
    applyCopies(env, pending);
    pending.length = 0;
  }
}

function cpAsync(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const cache = m.take("ca", "cg");
  if (!cache) ctx.fail("cp.async needs .ca or .cg");
  if (!m.take("shared", "shared::cta")) ctx.fail("cp.async needs .shared destination");
  if (!m.take("global")) ctx.fail("cp.async needs .global source");
  while (m.match(/^L2::(64B|128B|256B)$/)) {
    /* prefetch hints: no effect */
  }
  if (m.match(/^L2::cache_hint$/)) ctx.fail("cp.async .L2::cache_hint is not implemented");
  m.done();
  const ops = ctx.operands(3, 4);
  const dst = ctx.address(ops[0]);
  const src = ctx.address(ops[1]);
  const bytes = ctx.literal(ops[2]);
  if (![4, 8, 16].includes(bytes)) ctx.fail(`cp.async copies 4, 8 or 16 bytes, not ${bytes}`);
  if (cache === "cg" && bytes !== 16) ctx.fail("cp.async.cg copies 16 bytes only");
  if (src.sharedVar || src.param) ctx.fail("cp.async source must be a global address");
  // Optional fourth operand: src-size (bytes actually read, the rest zero-filled) or an ignore-src predicate.
  const extra = ops[3];
  let srcSizeSlot = -1;
  let ignoreSrc: { slot: number; negate: boolean } | undefined;
  if (extra) {
    const reg = extra.kind === "name" ? ctx.layout.lookup(extra.name) : undefined;
    if (extra.kind === "not" || reg?.width === 1) ignoreSrc = ctx.predicate(extra);
    else srcSizeSlot = ctx.src(extra, "u32");
  }
  return {
    cls: CLS.cpAsync,
    at: ins.at,
    build(env, next) {
      const { i32, u32 } = env;
      const dstAddr = addressReader(env, dst);
      const srcAddr = addressReader(env, src);
      const R = env.regsPerThread;
      return (b) => {
        let srcBytes = bytes;
        if (srcSizeSlot >= 0) srcBytes = u32[b + srcSizeSlot]!;
        else if (ignoreSrc && (i32[b + ignoreSrc.slot] !== 0) !== ignoreSrc.negate) srcBytes = 0;
        if (srcBytes > bytes) throw new Fault(`cp.async src-size ${srcBytes} exceeds the copy size ${bytes}`);
        const so = env.shared.offset(dstAddr(b), bytes);
        const go = srcBytes > 0 ? env.global.offset(srcAddr(b), srcBytes, bytes) : 0;
        const t = (b / R) | 0;
        env.async.pending[t]!.push(so, go, bytes, srcBytes);
        return next;
      };
    },
  };
}

function commitOrWait(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  const what = m.take("commit_group", "wait_group", "wait_all");
  if (!what) return ctx.fail(`unsupported cp.async form ${ins.opcode}`);
  m.done();
  ctx.operands(what === "wait_group" ? 1 : 0);
  const n = what === "wait_group" ? ctx.literal(ctx.ins.operands[0]) : 0;
  return {
    cls: CLS.cpAsync,
    at: ins.at,
    build(env, next) {
      const R = env.regsPerThread;
      if (what === "commit_group")
        return (b) => {
          const t = (b / R) | 0;
          // The pending list becomes the group; the thread starts a fresh one.
          env.async.groups[t]!.push(env.async.pending[t]!);
          env.async.pending[t] = [];
          return next;
        };
      const keep = what === "wait_all" ? -1 : n;
      return (b) => {
        completeCopies(env, (b / R) | 0, keep);
        return next;
      };
    },
  };
}

export function decodeAsync(ctx: DecodeContext, ins: Instruction, m: Mods): Decoded {
  // opcode is cp.async.<...>: drop the "async" part
  if (!m.take("async")) return ctx.fail(`${ins.opcode} is not implemented (only cp.async)`);
  if (m.take("bulk")) return ctx.fail("cp.async.bulk (sm_90) is not implemented");
  const probe = ins.opcode.split(".")[2];
  if (probe === "commit_group" || probe === "wait_group" || probe === "wait_all") return commitOrWait(ctx, ins, m);
  return cpAsync(ctx, ins, m);
}
