// Turning an address operand into a checked byte offset in global or shared memory at run time. Global and
// shared accesses fault (with a Fault naming the address) when out of bounds or not naturally aligned.

import type { ExecEnv } from "./machine.ts";
import { SHARED_WINDOW, SHARED_WINDOW_SIZE } from "./memory.ts";
import { TWO32 } from "./numeric.ts";
import type { AddressOperand } from "./operands.ts";

export type Space = "global" | "shared" | "generic";

/** The address an operand names for thread base `b`, as a number. */
export function addressReader(env: ExecEnv, a: AddressOperand): (b: number) => number {
  const { i32, u32 } = env;
  const off = a.offset;
  const r = a.reg;
  if (!r) return () => off;
  const s = r.slot;
  if (r.width === 64) return (b) => i32[b + s + 1]! * TWO32 + u32[b + s]! + off;
  return (b) => u32[b + s]! + off;
}

/**
 * Resolves an address to a byte offset for an access of `bytes` bytes (aligned to `align`). For generic
 * addresses the result is tagged: offsets into shared memory are returned as -(offset + 1).
 */
export function resolver(env: ExecEnv, space: Space, a: AddressOperand, bytes: number, align = bytes): (b: number) => number {
  const addr = addressReader(env, a);
  const g = env.global;
  const sh = env.shared;
  if (space === "global") return (b) => g.offset(addr(b), bytes, align);
  if (space === "shared") return (b) => sh.offset(addr(b), bytes, align);
  return (b) => {
    const x = addr(b);
    if (x >= SHARED_WINDOW && x < SHARED_WINDOW + SHARED_WINDOW_SIZE) return -sh.offset(x - SHARED_WINDOW, bytes, align) - 1;
    return g.offset(x, bytes, align);
  };
}
