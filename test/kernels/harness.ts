// Runs a kernel program in the PTX emulator on host tensors: renders PTX, parses it with the emulator,
// uploads every pointer argument (bf16 as raw bits), evaluates the program's grid from the scalar
// arguments, launches, and reads every pointer argument back. Also: random bf16-representable data and
// the comparison helpers the kernel tests share.

import { renderPtx } from "../../compiler/codegen/render.ts";
import type { KernelProgram } from "../../compiler/tile/index.ts";
import { launchGrid } from "../../compiler/tile/index.ts";
import { bf16BitsToF32, f32ToBf16Bits, type HostTensor, hostTensor, roundBf16InPlace } from "../../runtime/cpu/index.ts";
import { GlobalMemory, type LaunchStats, launch, parsePtx } from "../../runtime/ptx-emu/index.ts";

export type KernelArg = HostTensor | number;

export interface EmulatedRun {
  /** Every pointer argument after the launch, by param name (bf16 widened to f32). */
  tensors: Map<string, HostTensor>;
  stats: LaunchStats;
  grid: [number, number, number];
  ptx: string;
}

const moduleCache = new Map<string, ReturnType<typeof parsePtx>>();

export function runInEmulator(k: KernelProgram, args: Record<string, KernelArg>, ptx = renderPtx(k)): EmulatedRun {
  let mod = moduleCache.get(ptx);
  if (!mod) {
    mod = parsePtx(ptx, { fileName: `${k.name}.ptx` });
    moduleCache.set(ptx, mod);
  }
  const mem = new GlobalMemory();
  const scalars: Record<string, number> = {};
  const params: number[] = [];
  const buffers: { name: string; addr: number; t: HostTensor; dtype: string }[] = [];
  for (const p of k.params) {
    const a = args[p.name];
    if (a === undefined) throw new Error(`kernel ${k.name}: no argument for ${p.name}`);
    if (p.kind === "scalar") {
      if (typeof a !== "number") throw new Error(`kernel ${k.name}: ${p.name} is a scalar`);
      scalars[p.name] = a;
      params.push(a);
      continue;
    }
    if (typeof a === "number") throw new Error(`kernel ${k.name}: ${p.name} is a pointer`);
    const data =
      p.dtype === "bf16"
        ? f32ToBf16Bits(a.data as Float32Array)
        : p.dtype === "f32"
          ? Float32Array.from(a.data)
          : Int32Array.from(a.data);
    // At least 16 bytes so an empty tensor still has a valid base address.
    const bytes = Math.max(16, data.byteLength);
    const addr = mem.alloc(bytes, 256);
    mem.write(addr, data);
    buffers.push({ name: p.name, addr, t: a, dtype: p.dtype });
    params.push(addr);
  }
  const grid = launchGrid(k, scalars);
  if (grid.some((d) => d === 0)) throw new Error(`kernel ${k.name}: empty grid ${grid.join("x")}`);
  const stats = launch(mod, k.name, { grid, block: k.warps * 32, params }, mem);
  const tensors = new Map<string, HostTensor>();
  for (const b of buffers) {
    const n = b.t.data.length;
    const data =
      b.dtype === "bf16"
        ? bf16BitsToF32(mem.readU16(b.addr, n))
        : b.dtype === "f32"
          ? mem.readF32(b.addr, n)
          : mem.readI32(b.addr, n);
    tensors.set(b.name, hostTensor(b.t.shape, b.t.dtype, data));
  }
  return { tensors, stats, grid, ptx };
}

/** A deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale); rounded to bf16 when `bf16` (what the kernel sees). */
export function randomTensor(
  shape: readonly number[],
  seed: number,
  o: { scale?: number; bf16?: boolean; offset?: number } = {},
): HostTensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  const s = o.scale ?? 1;
  for (let i = 0; i < n; i++) d[i] = (r() * 2 - 1) * s + (o.offset ?? 0);
  if (o.bf16 ?? true) roundBf16InPlace(d);
  return hostTensor(shape, "f32", d);
}

export function zeros(shape: readonly number[], dtype: "f32" | "bf16" | "i32" = "f32"): HostTensor {
  return hostTensor(shape, dtype);
}

export interface Agreement {
  maxAbs: number;
  /** max |got - want| / tol: at most 1 when every element is within its bound. */
  worstRatio: number;
  worstIndex: number;
}

/** Compares element by element against per-element tolerances `tol(i, want)` (PTC_AGREEMENT=1 prints it). */
export function agreement(got: ArrayLike<number>, want: ArrayLike<number>, tol: (i: number, want: number) => number): Agreement {
  if (got.length !== want.length) throw new Error(`length ${got.length} != ${want.length}`);
  let maxAbs = 0;
  let worstRatio = 0;
  let worstIndex = -1;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    const bad = Number.isNaN(got[i]) !== Number.isNaN(want[i]);
    const r = bad ? Number.POSITIVE_INFINITY : Number.isNaN(d) ? 0 : d / tol(i, want[i]);
    if (d > maxAbs) maxAbs = d;
    if (r > worstRatio) {
      worstRatio = r;
      worstIndex = i;
    }
  }
  if (process.env.PTC_AGREEMENT)
    console.log(`agreement: max abs ${maxAbs.toExponential(2)} worst ratio ${worstRatio.toFixed(4)}`);
  return { maxAbs, worstRatio, worstIndex };
}

/** One bf16 rounding of a result computed in f32: the two roundings may land on adjacent bf16 values. */
export const BF16_ULP_REL = 2 ** -7;
