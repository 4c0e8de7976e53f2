// CPU kernels by op name. Each computes one node from its inputs in f64/f32 arithmetic; the
// executor rounds bf16-typed results afterwards.

import type { Node } from "../../../compiler/ir/index.ts";
import type { HostTensor } from "../tensor.ts";

export interface KernelContext {
  /** Seed for dropout / drop-path streams of this execution. */
  readonly seed: number;
}

export type CpuKernel = (node: Node, inputs: readonly HostTensor[], ctx: KernelContext) => HostTensor;

const kernels = new Map<string, CpuKernel>();

export function registerKernel(op: string, k: CpuKernel): void {
  if (kernels.has(op)) throw new Error(`CPU kernel for ${op} registered twice`);
  kernels.set(op, k);
}

export function cpuKernel(op: string): CpuKernel | undefined {
  return kernels.get(op);
}
