// Runs one CTA. Threads run independently (Volta-style independent scheduling), each until it blocks at a
// warp collective (mma, ldmatrix, shfl, vote, bar.warp.sync) or a CTA barrier, or exits. Then the blocked
// threads rendezvous: a collective runs once for its warp when every lane it names waits at the same
// instruction; a barrier releases when all its threads have arrived. If nothing can move, that is a deadlock
// (or a divergent collective) and an error. The order is fixed (threads in id order), so runs are deterministic.

import { Fault, PtxRuntimeError } from "./errors.ts";
import { SPECIAL } from "./layout.ts";
import { type Decoded, EXITED, type Exec, type ExecEnv, type WarpExec } from "./machine.ts";
import { completeCopies } from "./ops-async.ts";

const RUNNING = 0;
const WAIT_WARP = 1;
const WAIT_BARRIER = 2;
const DONE = 3;

export type Dim3 = [number, number, number];

export interface CtaShape {
  kernel: string;
  block: Dim3;
  grid: Dim3;
  dynamicSharedBytes: number;
  totalSharedBytes: number;
}

export class CtaScheduler {
  private readonly threads: number;
  private readonly pc: Int32Array;
  private readonly state: Uint8Array;
  private readonly bases = new Int32Array(32);
  private readonly warpExecs = new Map<number, WarpExec>();
  private readonly barrierArrived = new Int32Array(16);
  private readonly barrierFirst = new Int32Array(16);
  private ctaid: Dim3 = [0, 0, 0];
  /** Thread-instructions left before the run is stopped as a runaway. */
  budget: number;

  constructor(
    private readonly shape: CtaShape,
    private readonly decoded: readonly Decoded[],
    private readonly code: readonly Exec[],
    private readonly env: ExecEnv,
    private readonly template: Int32Array,
    private readonly hits: Float64Array,
    instructionLimit: number,
  ) {
    const [bx, by, bz] = shape.block;
    this.threads = bx * by * bz;
    this.pc = new Int32Array(this.threads);
    this.state = new Uint8Array(this.threads);
    this.budget = instructionLimit;
  }

  private threadIndex(t: number): [number, number, number] {
    const [bx, by] = this.shape.block;
    return [t % bx, Math.floor(t / bx) % by, Math.floor(t / (bx * by))];
  }

  private fault(detail: string, pc: number | undefined, t: number | undefined): PtxRuntimeError {
    const at = pc === undefined ? undefined : this.decoded[pc]?.at;
    return new PtxRuntimeError(this.shape.kernel, detail, at, t === undefined ? undefined : this.threadIndex(t), this.ctaid);
  }

  private wrap(e: unknown, pc: number, t: number): unknown {
    if (e instanceof Fault) return this.fault(e.message, pc, t);
    return e;
  }

  /** Set up registers, shared memory and async-copy state of a fresh CTA. */
  private reset(ctaid: Dim3): void {
    const { i32, regsPerThread: R } = this.env;
    const [bx, by, bz] = this.shape.block;
    const [gx, gy, gz] = this.shape.grid;
    const nwarps = Math.ceil(this.threads / 32);
    for (let t = 0; t < this.threads; t++) {
      const b = t * R;
      i32.set(this.template, b);
      const [x, y, z] = this.threadIndex(t);
      i32[b + SPECIAL["%tid.x"]] = x;
      i32[b + SPECIAL["%tid.y"]] = y;
      i32[b + SPECIAL["%tid.z"]] = z;
      i32[b + SPECIAL["%ntid.x"]] = bx;
      i32[b + SPECIAL["%ntid.y"]] = by;
      i32[b + SPECIAL["%ntid.z"]] = bz;
      i32[b + SPECIAL["%ctaid.x"]] = ctaid[0];
      i32[b + SPECIAL["%ctaid.y"]] = ctaid[1];
      i32[b + SPECIAL["%ctaid.z"]] = ctaid[2];
      i32[b + SPECIAL["%nctaid.x"]] = gx;
      i32[b + SPECIAL["%nctaid.y"]] = gy;
      i32[b + SPECIAL["%nctaid.z"]] = gz;
      i32[b + SPECIAL["%laneid"]] = t % 32;
      i32[b + SPECIAL["%warpid"]] = t >> 5;
      i32[b + SPECIAL["%nwarpid"]] = nwarps;
      i32[b + SPECIAL["%dynamic_smem_size"]] = this.shape.dynamicSharedBytes;
      i32[b + SPECIAL["%total_smem_size"]] = this.shape.totalSharedBytes;
      this.env.async.pending[t] = [];
      this.env.async.groups[t] = [];
    }
    this.pc.fill(0);
    this.state.fill(RUNNING);
    this.env.shared.poison();
  }

  run(ctaid: Dim3): void {
    this.ctaid = ctaid;
    this.reset(ctaid);
    for (;;) {
      for (let t = 0; t < this.threads; t++) if (this.state[t] === RUNNING) this.runThread(t);
      let progress = false;
      for (let w = 0; w * 32 < this.threads; w++) if (this.resolveWarp(w)) progress = true;
      if (this.resolveBarriers()) progress = true;
      if (progress) continue;
      if (this.state.every((s) => s === DONE)) return;
      throw this.deadlock();
    }
  }

  private runThread(t: number): void {
    const code = this.code;
    const hits = this.hits;
    const b = t * this.env.regsPerThread;
    let pc = this.pc[t]!;
    let budget = this.budget;
    let next = 0;
    try {
      for (;;) {
        hits[pc]!++;
        next = code[pc]!(b);
        if (next < 0) break;
        pc = next;
        if (--budget < 0)
          throw new Fault("instruction limit exceeded (an endless loop? raise `maxInstructions` if the kernel is just long)");
      }
    } catch (e) {
      this.budget = budget;
      throw this.wrap(e, pc, t);
    }
    this.budget = budget;
    this.pc[t] = pc;
    if (next === EXITED) {
      this.state[t] = DONE;
      try {
        completeCopies(this.env, t, -1);
      } catch (e) {
        throw this.wrap(e, pc, t);
      }
    } else this.state[t] = this.decoded[pc]!.barrier ? WAIT_BARRIER : WAIT_WARP;
  }

  /** Run every warp collective of warp w whose lanes have all arrived. Returns whether any ran. */
  private resolveWarp(w: number): boolean {
    const first = w * 32;
    const lanes = Math.min(32, this.threads - first);
    const { u32, regsPerThread: R } = this.env;
    let progress = false;
    for (let l = 0; l < lanes; l++) {
      const t = first + l;
      if (this.state[t] !== WAIT_WARP) continue;
      const pc = this.pc[t]!;
      const spec = this.decoded[pc]!.collective!;
      const mask = spec.maskSlot === undefined ? -1 : u32[t * R + spec.maskSlot]! | 0;
      if (spec.aligned && lanes < 32)
        throw this.fault(`${spec.name} needs a full warp of 32 threads; warp ${w} has ${lanes}`, pc, t);
      if (((mask >>> l) & 1) === 0)
        throw this.fault(`${spec.name}: the executing lane ${l} is not in its membermask 0x${(mask >>> 0).toString(16)}`, pc, t);
      let ready = true;
      for (let k = 0; k < 32; k++) {
        if (((mask >>> k) & 1) === 0) continue;
        const tk = first + k;
        if (k >= lanes)
          throw this.fault(
            `${spec.name}: membermask 0x${(mask >>> 0).toString(16)} names lane ${k}, which does not exist (the CTA has ${this.threads} threads)`,
            pc,
            t,
          );
        const s = this.state[tk];
        if (s === DONE)
          throw this.fault(
            `${spec.name}: lane ${k} of the warp has exited, so it can never join this ${spec.aligned ? "warp-wide instruction" : "membermask"}`,
            pc,
            t,
          );
        if (s !== WAIT_WARP || this.pc[tk] !== pc) {
          ready = false;
          break;
        }
        if (spec.maskSlot !== undefined && (u32[tk * R + spec.maskSlot]! | 0) !== mask) {
          throw this.fault(`${spec.name}: lanes ${l} and ${k} arrive with different membermasks`, pc, t);
        }
      }
      if (!ready) continue;
      const bases = this.bases;
      bases.fill(-1);
      for (let k = 0; k < lanes; k++) if ((mask >>> k) & 1) bases[k] = (first + k) * R;
      let exec = this.warpExecs.get(pc);
      if (!exec) {
        exec = spec.build(this.env);
        this.warpExecs.set(pc, exec);
      }
      try {
        exec(bases, mask);
      } catch (e) {
        throw this.wrap(e, pc, t);
      }
      for (let k = 0; k < lanes; k++) {
        if ((mask >>> k) & 1) {
          this.pc[first + k] = pc + 1;
          this.state[first + k] = RUNNING;
        }
      }
      progress = true;
    }
    return progress;
  }

  /** Release every barrier that all its threads have reached. */
  private resolveBarriers(): boolean {
    const { u32, regsPerThread: R } = this.env;
    const arrived = this.barrierArrived;
    const first = this.barrierFirst;
    arrived.fill(0);
    let any = false;
    for (let t = 0; t < this.threads; t++) {
      if (this.state[t] !== WAIT_BARRIER) continue;
      const id = u32[t * R + this.decoded[this.pc[t]!]!.barrier!.idSlot]!;
      if (id > 15) throw this.fault(`barrier id ${id} is out of range (0..15)`, this.pc[t], t);
      if (arrived[id]++ === 0) first[id] = t;
      any = true;
    }
    if (!any) return false;
    let progress = false;
    for (let id = 0; id < 16; id++) {
      if (arrived[id] === 0) continue;
      const t0 = first[id]!;
      const spec = this.decoded[this.pc[t0]!]!.barrier!;
      const expected = spec.countSlot === undefined ? this.threads : u32[t0 * R + spec.countSlot]!;
      if (spec.countSlot !== undefined && (expected % 32 !== 0 || expected === 0 || expected > this.threads)) {
        throw this.fault(
          `bar.sync ${id}: thread count ${expected} must be a non-zero multiple of 32 and at most the CTA size`,
          this.pc[t0],
          t0,
        );
      }
      if (arrived[id]! < expected) continue;
      if (arrived[id]! > expected)
        throw this.fault(`bar.sync ${id}: ${arrived[id]} threads arrived but the barrier expects ${expected}`, this.pc[t0], t0);
      for (let t = t0; t < this.threads; t++) {
        if (this.state[t] !== WAIT_BARRIER || u32[t * R + this.decoded[this.pc[t]!]!.barrier!.idSlot] !== id) continue;
        this.pc[t] = this.pc[t]! + 1;
        this.state[t] = RUNNING;
      }
      progress = true;
    }
    return progress;
  }

  /** Describe who waits where when no thread can move. */
  private deadlock(): PtxRuntimeError {
    const groups = new Map<string, number[]>();
    let firstPc: number | undefined;
    for (let t = 0; t < this.threads; t++) {
      const s = this.state[t];
      let key: string;
      if (s === DONE) key = "have exited";
      else {
        const pc = this.pc[t]!;
        firstPc ??= pc;
        const d = this.decoded[pc]!;
        key = `wait at line ${d.at.line} (${d.at.text})`;
      }
      let list = groups.get(key);
      if (!list) groups.set(key, (list = []));
      list.push(t);
    }
    const parts = [...groups].map(([what, ts]) => `threads ${ranges(ts)} ${what}`);
    return this.fault(`deadlock: no thread can proceed: ${parts.join("; ")}`, firstPc, undefined);
  }
}

/** [0,1,2,3,7] -> "0-3,7" */
function ranges(ts: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ts.length; ) {
    let j = i;
    while (j + 1 < ts.length && ts[j + 1] === ts[j]! + 1) j++;
    out.push(i === j ? `${ts[i]}` : `${ts[i]}-${ts[j]}`);
    i = j + 1;
  }
  return out.join(",");
}
