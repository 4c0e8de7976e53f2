// The contract between decoded instructions and the scheduler: what an instruction's code sees at run time
// (ExecEnv), what it returns (the next pc, or BLOCKED / EXITED), and how warp collectives and barriers are
// described so that the scheduler can rendezvous threads.

import type { PtxLocation } from "./errors.ts";
import type { ByteViews, GlobalMemory, SharedMemory } from "./memory.ts";

/**
 * One thread's step: `b` is the thread's base slot in the register views. Returns the next pc, or BLOCKED
 * (the thread waits at this pc for a collective or barrier) or EXITED.
 */
export type Exec = (b: number) => number;
export const BLOCKED = -1;
export const EXITED = -2;

/** Instruction classes counted per launch. */
export const INSTRUCTION_CLASSES = [
  "tensorCore",
  "ldmatrix",
  "cpAsync",
  "globalLoad",
  "globalStore",
  "sharedLoad",
  "sharedStore",
  "atomic",
  "paramLoad",
  "intAlu",
  "floatAlu",
  "specialFunction",
  "controlSync",
] as const;
export type InstructionClass = (typeof INSTRUCTION_CLASSES)[number];
export const CLS = Object.fromEntries(INSTRUCTION_CLASSES.map((c, i) => [c, i])) as Record<InstructionClass, number>;

/** Indices into ExecEnv.counters (bytes and warp-level operations, counted when they execute). */
export const COUNTER = {
  globalLoadBytes: 0,
  globalStoreBytes: 1,
  sharedLoadBytes: 2,
  sharedStoreBytes: 3,
  mmaOps: 4,
} as const;
export const COUNTER_COUNT = 5;

/** Pending cp.async copies of the threads of the running CTA (see ops-async.ts). */
export interface AsyncCopies {
  /** Per thread: flat [sharedOffset, globalOffset, bytes, srcBytes, ...] of copies not yet committed. */
  pending: number[][];
  /** Per thread: committed groups, oldest first, each a flat list as above. */
  groups: number[][][];
}

export interface ExecEnv {
  /** Register file views of the running CTA: thread t's slots start at t * regsPerThread. */
  i32: Int32Array;
  u32: Uint32Array;
  f32: Float32Array;
  f64: Float64Array;
  i64: BigInt64Array;
  regsPerThread: number;
  global: GlobalMemory;
  /** Global memory views, fixed for the launch. */
  g: ByteViews;
  shared: SharedMemory;
  /** Shared memory views of the running CTA. */
  s: ByteViews;
  /** The kernel parameter block. */
  params: ByteViews;
  counters: Float64Array;
  async: AsyncCopies;
}

/** Executes a warp collective once all participating lanes have arrived; bases[lane] is -1 for absent lanes. */
export type WarpExec = (bases: Int32Array, mask: number) => void;

export interface CollectiveSpec {
  name: string;
  /** `.aligned`/mma/ldmatrix: all 32 lanes must arrive; otherwise the lanes of the membermask. */
  aligned: boolean;
  /** Slot of the membermask operand; absent for aligned-only instructions (mask = all 32 lanes). */
  maskSlot?: number;
  build(env: ExecEnv): WarpExec;
}

export interface BarrierSpec {
  /** Slot holding the barrier id. */
  idSlot: number;
  /** Slot holding the expected thread count; absent = all threads of the CTA. */
  countSlot?: number;
}

export interface Decoded {
  cls: number;
  at: PtxLocation;
  /** Builds the per-thread code for one launch; `next` is this instruction's pc + 1. */
  build(env: ExecEnv, next: number): Exec;
  collective?: CollectiveSpec;
  barrier?: BarrierSpec;
}
