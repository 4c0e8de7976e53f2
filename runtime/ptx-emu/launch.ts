// launch(): run a kernel of a parsed module over a grid of CTAs against a GlobalMemory, and return what it
// executed (instructions by class, bytes moved). CTAs run one after another, in x-fastest order.

import { PtxRuntimeError } from "./errors.ts";
import {
  type AsyncCopies,
  COUNTER,
  COUNTER_COUNT,
  type Exec,
  type ExecEnv,
  INSTRUCTION_CLASSES,
  type InstructionClass,
} from "./machine.ts";
import { ByteViews, type GlobalMemory, SharedMemory } from "./memory.ts";
import type { KernelParam, KernelProgram, PtxModule } from "./module.ts";
import { CtaScheduler, type Dim3 } from "./scheduler.ts";

/** sm_80's largest shared memory per CTA (with the dynamic opt-in). */
export const MAX_SHARED_BYTES_SM80 = 163 * 1024;

export interface LaunchConfig {
  grid: number | readonly number[];
  block: number | readonly number[];
  dynamicSharedBytes?: number;
  /** One value per `.param`, in order: device addresses and integers as number or bigint, floats as number. */
  params: readonly (number | bigint)[];
  /** Stop a runaway kernel after this many thread-instructions (default 2e9). */
  maxInstructions?: number;
}

export interface LaunchStats {
  /** Issued thread-instructions by class (a predicated-off instruction counts, as on hardware). */
  instructions: Record<InstructionClass, number>;
  totalInstructions: number;
  /** Warp-level mma.sync operations executed. */
  mmaOps: number;
  bytes: { globalLoad: number; globalStore: number; sharedLoad: number; sharedStore: number };
  ctas: number;
  threadsPerCta: number;
  sharedBytesPerCta: number;
}

function dim3(v: number | readonly number[], what: string): Dim3 {
  const a = typeof v === "number" ? [v] : [...v];
  const d: Dim3 = [a[0] ?? 1, a[1] ?? 1, a[2] ?? 1];
  if (a.length < 1 || a.length > 3 || d.some((x) => !Number.isInteger(x) || x < 1))
    throw new RangeError(`${what} must be 1 to 3 positive integers, got ${JSON.stringify(v)}`);
  return d;
}

function writeParam(view: DataView, p: KernelParam, value: number | bigint, kernel: string): void {
  const bad = (why: string): never => {
    throw new RangeError(`kernel ${kernel}: parameter ${p.name} (.${p.type}): ${why}, got ${String(value)}`);
  };
  if (p.type === "f32" || p.type === "f64") {
    const x = typeof value === "number" ? value : bad("expected a number");
    if (p.type === "f32") view.setFloat32(p.offset, x, true);
    else view.setFloat64(p.offset, x, true);
    return;
  }
  const big = typeof value === "bigint" ? value : Number.isSafeInteger(value) ? BigInt(value) : bad("expected an integer");
  const bits = BigInt(p.bytes * 8);
  if (big < -(1n << (bits - 1n)) || big >= 1n << bits) bad(`does not fit ${bits} bits`);
  const u = BigInt.asUintN(Number(bits), big);
  if (p.bytes === 8) view.setBigUint64(p.offset, u, true);
  else if (p.bytes === 4) view.setUint32(p.offset, Number(u), true);
  else if (p.bytes === 2) view.setUint16(p.offset, Number(u), true);
  else view.setUint8(p.offset, Number(u));
}

/** Run `kernelName` from `mod`. Faults throw PtxRuntimeError naming the kernel, PTX line, thread and block. */
export function launch(mod: PtxModule, kernelName: string, config: LaunchConfig, mem: GlobalMemory): LaunchStats {
  const prog: KernelProgram | undefined = mod.kernels.get(kernelName);
  if (!prog)
    throw new PtxRuntimeError(kernelName, `no such kernel; the module has: ${[...mod.kernels.keys()].join(", ") || "none"}`);
  const fail = (detail: string): never => {
    throw new PtxRuntimeError(kernelName, detail);
  };
  const grid = dim3(config.grid, "grid");
  const block = dim3(config.block, "block");
  const threads = block[0] * block[1] * block[2];
  if (threads > 1024) fail(`block of ${threads} threads exceeds 1024`);
  if (block[2] > 64) fail("block z dimension exceeds 64");
  if (prog.reqntid?.some((x, i) => x !== block[i]))
    fail(`.reqntid ${prog.reqntid.join(",")} does not match block ${block.join(",")}`);
  if (prog.maxntid && threads > prog.maxntid[0] * prog.maxntid[1] * prog.maxntid[2])
    fail(`block of ${threads} threads exceeds .maxntid ${prog.maxntid.join(",")}`);
  const dynamicSharedBytes = config.dynamicSharedBytes ?? 0;
  if (!Number.isInteger(dynamicSharedBytes) || dynamicSharedBytes < 0) fail(`bad dynamicSharedBytes ${dynamicSharedBytes}`);
  const sharedBytes = dynamicSharedBytes > 0 ? prog.dynamicSharedOffset + dynamicSharedBytes : prog.staticSharedBytes;
  if (sharedBytes > MAX_SHARED_BYTES_SM80)
    fail(`${sharedBytes} bytes of shared memory exceed sm_80's ${MAX_SHARED_BYTES_SM80} per CTA`);
  if (config.params.length !== prog.params.length) {
    fail(
      `expects ${prog.params.length} parameters (${prog.params.map((p) => `${p.name}: .${p.type}`).join(", ")}), got ${config.params.length}`,
    );
  }
  const paramBuffer = new ArrayBuffer(Math.max(8, Math.ceil(prog.paramBytes / 8) * 8));
  const paramView = new DataView(paramBuffer);
  prog.params.forEach((p, i) => {
    writeParam(paramView, p, config.params[i]!, kernelName);
  });

  const R = prog.layout.size;
  const regs = new ArrayBuffer(threads * R * 4);
  const shared = new SharedMemory(sharedBytes);
  const counters = new Float64Array(COUNTER_COUNT);
  const async: AsyncCopies = { pending: [], groups: [] };
  const env: ExecEnv = {
    i32: new Int32Array(regs),
    u32: new Uint32Array(regs),
    f32: new Float32Array(regs),
    f64: new Float64Array(regs),
    i64: new BigInt64Array(regs),
    regsPerThread: R,
    global: mem,
    g: mem.bytes,
    shared,
    s: shared.views,
    params: new ByteViews(paramBuffer),
    counters,
    async,
  };
  const code: Exec[] = prog.code.map((d, pc) => d.build(env, pc + 1));
  const hits = new Float64Array(code.length);
  const scheduler = new CtaScheduler(
    { kernel: kernelName, block, grid, dynamicSharedBytes, totalSharedBytes: sharedBytes },
    prog.code,
    code,
    env,
    prog.layout.template(),
    hits,
    config.maxInstructions ?? 2e9,
  );
  for (let z = 0; z < grid[2]; z++) for (let y = 0; y < grid[1]; y++) for (let x = 0; x < grid[0]; x++) scheduler.run([x, y, z]);

  const instructions = Object.fromEntries(INSTRUCTION_CLASSES.map((c) => [c, 0])) as Record<InstructionClass, number>;
  let total = 0;
  prog.code.forEach((d, pc) => {
    instructions[INSTRUCTION_CLASSES[d.cls]!] += hits[pc]!;
    total += hits[pc]!;
  });
  return {
    instructions,
    totalInstructions: total,
    mmaOps: counters[COUNTER.mmaOps]!,
    bytes: {
      globalLoad: counters[COUNTER.globalLoadBytes]!,
      globalStore: counters[COUNTER.globalStoreBytes]!,
      sharedLoad: counters[COUNTER.sharedLoadBytes]!,
      sharedStore: counters[COUNTER.sharedStoreBytes]!,
    },
    ctas: grid[0] * grid[1] * grid[2],
    threadsPerCta: threads,
    sharedBytesPerCta: sharedBytes,
  };
}
