// Hand-made ExecutablePlans for the executor tests: buffers and launches of kernels/ programs
// rendered by compiler/codegen, with firstUse/lastUse computed from what each launch touches (as
// compiler/lower does). Independent of compiler/lower, so the executor is tested on its own.

import { renderPtx } from "../../compiler/codegen/render.ts";
import { type DType, numel, type Shape } from "../../compiler/ir/index.ts";
import {
  type BufferRole,
  deviceBytes,
  type ExecutablePlan,
  type KernelLaunch,
  type LaunchArg,
  type PlanBuffer,
} from "../../compiler/lower/plan.ts";
import { type KernelProgram, launchGrid } from "../../compiler/tile/index.ts";

interface DraftBuffer {
  id: number;
  bytes: number;
  dtype: DType;
  shape: Shape;
  role: BufferRole;
  name?: string;
  data?: Float32Array | Int32Array;
  aliasOf?: { buffer: number; offsetBytes: number };
}

export type BuilderArg = number | { buffer: number; offsetBytes?: number };

export class PlanBuilder {
  private readonly buffers: DraftBuffer[] = [];
  private readonly modules: { name: string; ptx: string }[] = [];
  private readonly moduleIndex = new Map<string, number>();
  private readonly launches: KernelLaunch[] = [];

  buffer(role: BufferRole, shape: Shape, dtype: DType, o: { name?: string; data?: Float32Array | Int32Array } = {}): number {
    const id = this.buffers.length;
    this.buffers.push({ id, bytes: numel(shape) * deviceBytes(dtype), dtype, shape: [...shape], role, ...o });
    return id;
  }

  /** A view of `of` (a reshape): shares its storage at `offsetBytes`. */
  view(of: number, shape: Shape, o: { role?: BufferRole; name?: string; offsetBytes?: number } = {}): number {
    const src = this.buffers[of];
    const id = this.buffers.length;
    this.buffers.push({
      id,
      bytes: numel(shape) * deviceBytes(src.dtype),
      dtype: src.dtype,
      shape: [...shape],
      role: o.role ?? "temp",
      name: o.name,
      aliasOf: { buffer: of, offsetBytes: o.offsetBytes ?? 0 },
    });
    return id;
  }

  /** One launch of `program`; `args` by the program's param names; `writes` are the outputs. */
  launch(program: KernelProgram, args: Record<string, BuilderArg>, writes: readonly string[], label: string): void {
    let module = this.moduleIndex.get(program.name);
    if (module === undefined) {
      module = this.modules.length;
      this.modules.push({ name: program.name, ptx: renderPtx(program) });
      this.moduleIndex.set(program.name, module);
    }
    const scalars: Record<string, number> = {};
    const launchArgs: LaunchArg[] = [];
    const reads: number[] = [];
    const written: number[] = [];
    for (const p of program.params) {
      const a = args[p.name];
      if (a === undefined) throw new Error(`${program.name}: no argument ${p.name}`);
      if (p.kind === "scalar") {
        if (typeof a !== "number") throw new Error(`${program.name}: ${p.name} is a scalar`);
        scalars[p.name] = a;
        launchArgs.push({ kind: p.type, value: a });
      } else {
        if (typeof a === "number") throw new Error(`${program.name}: ${p.name} is a pointer`);
        launchArgs.push({ kind: "buffer", buffer: a.buffer, offsetBytes: a.offsetBytes });
        (writes.includes(p.name) ? written : reads).push(a.buffer);
      }
    }
    this.launches.push({
      module,
      kernel: program.name,
      grid: launchGrid(program, scalars),
      block: [program.warps * 32, 1, 1],
      dynamicSharedBytes: 0,
      args: launchArgs,
      reads,
      writes: written,
      label,
      nodes: [],
    });
  }

  build(): ExecutablePlan {
    const first = new Map<number, number>();
    const last = new Map<number, number>();
    this.launches.forEach((l, i) => {
      for (const id of [...l.reads, ...l.writes]) {
        if (!first.has(id)) first.set(id, i);
        last.set(id, i);
      }
    });
    const buffers: PlanBuffer[] = this.buffers.map((b) => ({
      ...b,
      firstUse: first.get(b.id) ?? -1,
      lastUse: last.get(b.id) ?? -1,
    }));
    const named = (role: BufferRole) =>
      Object.fromEntries(this.buffers.filter((b) => b.role === role && b.name).map((b) => [b.name as string, b.id]));
    return {
      format: "ptc-plan",
      version: 1,
      modules: this.modules,
      buffers,
      launches: this.launches,
      inputs: named("input"),
      params: named("param"),
      outputs: named("output"),
    };
  }
}
