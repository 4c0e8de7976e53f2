// The executable plan: what compiler/lower produces from a graph and what every device backend
// (runtime/exec over the PTX emulator or the CUDA driver) runs. Plain data, JSON-serialisable
// (constant data aside), so `ptc build` can write it next to the PTX.
//
// A plan is a sequence of kernel launches over numbered buffers. Buffers hold one graph value each
// in its graph dtype (bf16 as 2-byte bits, f32 and i32 as 4 bytes), row-major; a view (reshape)
// may share its source's buffer at an offset. The executor decides where buffers live (it may reuse
// memory by liveness using firstUse/lastUse); the plan only says what each launch reads and writes.
// Every owner buffer must start 256-byte aligned: kernels use 16-byte vector accesses, and the
// lowering checks view offsets against that alignment.

import type { DType, Shape } from "../ir/index.ts";

export type BufferRole = "input" | "param" | "output" | "const" | "temp";

export interface PlanBuffer {
  readonly id: number;
  readonly bytes: number;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly role: BufferRole;
  /** Graph input / param / output name for those roles. */
  readonly name?: string;
  /** Constant contents (role "const"), as graph values: the executor converts to the dtype's bits. */
  readonly data?: Float32Array | Int32Array;
  /** When this buffer shares storage with another (a view): the owner's id and a byte offset. */
  readonly aliasOf?: { readonly buffer: number; readonly offsetBytes: number };
  /** Index of the first and last launch that touch it (-1 when none, e.g. an unused param). */
  readonly firstUse: number;
  readonly lastUse: number;
}

export type LaunchArg =
  | { readonly kind: "buffer"; readonly buffer: number; readonly offsetBytes?: number }
  | { readonly kind: "i32" | "u32" | "f32" | "i64" | "u64"; readonly value: number };

export interface PlanModule {
  readonly name: string;
  /** sm_80 PTX text (one .entry per kernel it defines). */
  readonly ptx: string;
}

export interface KernelLaunch {
  /** Index into ExecutablePlan.modules. */
  readonly module: number;
  /** The .entry name inside that module. */
  readonly kernel: string;
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly dynamicSharedBytes: number;
  /** In the kernel's .param order. */
  readonly args: readonly LaunchArg[];
  /** Buffers the launch reads and writes (for liveness, hazards and byte accounting). */
  readonly reads: readonly number[];
  readonly writes: readonly number[];
  /** Human label: "matmul %12 @ stages.0.blocks.0.attn.qkv (model/perceptnet/blocks.ts:44)". */
  readonly label: string;
  /** Graph node ids computed by this launch. */
  readonly nodes: readonly number[];
}

/**
 * Named buffers laid out inside one flat owner buffer at fixed element offsets (every f32 parameter
 * in one buffer, every gradient output in another), so whole-model steps (one cast of all the
 * weights, AdamW over all of them) are one launch, and a trainer can keep each pack as one
 * allocation. Members stay individually named in `params` / `outputs` (as views of the owner).
 */
export interface PlanPack {
  /** The owner buffer (role "param" for the parameter pack, "output" for an output pack). */
  readonly buffer: number;
  /** Member name -> element offset inside the owner. */
  readonly offsets: Readonly<Record<string, number>>;
}

export interface ExecutablePlan {
  readonly format: "ptc-plan";
  readonly version: 1;
  readonly modules: readonly PlanModule[];
  readonly buffers: readonly PlanBuffer[];
  readonly launches: readonly KernelLaunch[];
  /** Graph input / param / output name -> buffer id. */
  readonly inputs: Readonly<Record<string, number>>;
  readonly params: Readonly<Record<string, number>>;
  readonly outputs: Readonly<Record<string, number>>;
  /**
   * Buffer id of the run's seed when the plan draws random masks (dropout, dropPath): an i32 scalar
   * (role "input", name "$seed") the executor fills with the run's seed before the launches, as
   * runtime/cpu's execute(..., { seed }) takes it. Absent when nothing is random.
   */
  readonly seed?: number;
  /**
   * Packs by name ("$params": the parameters, bound or uploaded per member; an output pack such as
   * "$grads" is also listed in `outputs`). Absent when nothing is packed.
   */
  readonly packs?: Readonly<Record<string, PlanPack>>;
}

/** Bytes of one element as stored on the device. */
export function deviceBytes(dtype: DType): number {
  return dtype === "bf16" ? 2 : 4;
}
