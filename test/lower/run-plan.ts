// A minimal executor of ExecutablePlans on the PTX emulator, for the lowering tests: allocate every
// owner buffer (256-byte aligned), resolve views, upload feeds and constants, run the launches in
// order, read the outputs back. The real executor (runtime/exec) does the same on any Device.

import type { ExecutablePlan } from "../../compiler/lower/index.ts";
import { bf16BitsToF32, f32ToBf16Bits, type HostTensor, hostTensor } from "../../runtime/cpu/index.ts";
import { GlobalMemory, type LaunchStats, launch, parsePtx } from "../../runtime/ptx-emu/index.ts";

export interface PlanRun {
  outputs: Map<string, HostTensor>;
  /** Per launch: its label and the emulator's counts. */
  stats: { label: string; kernel: string; stats: LaunchStats }[];
  instructions: number;
}

const parsed = new Map<string, ReturnType<typeof parsePtx>>();

function upload(mem: GlobalMemory, addr: number, dtype: string, data: Float32Array | Int32Array): void {
  if (dtype === "bf16") mem.write(addr, f32ToBf16Bits(Float32Array.from(data)));
  else if (dtype === "f32") mem.write(addr, Float32Array.from(data));
  else mem.write(addr, Int32Array.from(data));
}

export function runPlan(
  plan: ExecutablePlan,
  feeds: {
    inputs?: Record<string, HostTensor> | Map<string, HostTensor>;
    params?: Record<string, HostTensor> | Map<string, HostTensor>;
  },
  o: { seed?: number } = {},
): PlanRun {
  const get = (m: Record<string, HostTensor> | Map<string, HostTensor> | undefined, k: string) =>
    m instanceof Map ? m.get(k) : m?.[k];
  const mem = new GlobalMemory();
  const addr: number[] = [];
  for (const b of plan.buffers) if (!b.aliasOf) addr[b.id] = mem.alloc(Math.max(16, b.bytes), 256);
  for (const b of plan.buffers) if (b.aliasOf) addr[b.id] = addr[b.aliasOf.buffer] + b.aliasOf.offsetBytes;
  // A pack's owner has no feed of its own: its members (views) are fed by name.
  const packOwners = new Set(Object.values(plan.packs ?? {}).map((p) => p.buffer));
  for (const b of plan.buffers) {
    let data: Float32Array | Int32Array | undefined;
    if (packOwners.has(b.id)) continue;
    if (b.role === "const") data = b.data;
    else if (b.role === "input" && b.id === plan.seed) data = Int32Array.of(o.seed ?? 0);
    else if (b.role === "input" || b.role === "param") {
      const t = get(b.role === "input" ? feeds.inputs : feeds.params, b.name as string);
      if (!t) throw new Error(`runPlan: no feed for ${b.role} ${b.name}`);
      data = t.data;
    }
    if (data) upload(mem, addr[b.id], b.dtype, data);
  }
  const stats: PlanRun["stats"] = [];
  let instructions = 0;
  for (const l of plan.launches) {
    const m = plan.modules[l.module];
    let mod = parsed.get(m.ptx);
    if (!mod) {
      mod = parsePtx(m.ptx, { fileName: `${m.name}.ptx` });
      parsed.set(m.ptx, mod);
    }
    const params = l.args.map((a) => (a.kind === "buffer" ? addr[a.buffer] + (a.offsetBytes ?? 0) : a.value));
    const s = launch(mod, l.kernel, { grid: l.grid, block: l.block, dynamicSharedBytes: l.dynamicSharedBytes, params }, mem);
    stats.push({ label: l.label, kernel: l.kernel, stats: s });
    instructions += s.totalInstructions;
  }
  const outputs = new Map<string, HostTensor>();
  for (const [name, id] of Object.entries(plan.outputs)) {
    const b = plan.buffers[id];
    const n = Math.max(
      1,
      b.shape.reduce((x, y) => x * y, 1),
    );
    const data =
      b.dtype === "bf16"
        ? bf16BitsToF32(mem.readU16(addr[id], n))
        : b.dtype === "f32"
          ? mem.readF32(addr[id], n)
          : mem.readI32(addr[id], n);
    outputs.set(name, hostTensor(b.shape, b.dtype, data));
  }
  return { outputs, stats, instructions };
}
