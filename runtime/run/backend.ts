// Backends that execute a graph: a name, whether it can run here, and execute(). The CPU reference
// executor, and the device backends of runtime/exec (the PTX emulator and the CUDA driver).

import { type Graph, UserError } from "../../compiler/ir/index.ts";
import { execute as cpuExecute, type HostTensor } from "../cpu/index.ts";
import { cudaBackend, ptxEmuBackend } from "../exec/backends.ts";

export interface BackendFeeds {
  readonly inputs: ReadonlyMap<string, HostTensor>;
  readonly params: ReadonlyMap<string, HostTensor>;
}

export interface BackendOptions {
  /** Seed of dropout / drop-path streams. */
  readonly seed: number;
}

export interface Backend {
  readonly name: string;
  readonly description: string;
  /** true, or why this backend cannot run on this machine. */
  available(): true | string;
  /** The graph's named outputs. */
  execute(graph: Graph, feeds: BackendFeeds, options: BackendOptions): Promise<Map<string, HostTensor>>;
}

const backends = new Map<string, Backend>();

export function registerBackend(backend: Backend): void {
  if (backends.has(backend.name)) throw new Error(`backend '${backend.name}' registered twice`);
  backends.set(backend.name, backend);
}

export function backendNames(): string[] {
  return [...backends.keys()];
}

/** The named backend, or a UserError on --backend when it is unknown or cannot run here. */
export function getBackend(name: string): Backend {
  const b = backends.get(name);
  if (!b) throw new UserError(`unknown backend '${name}' (available: ${backendNames().join(", ")})`, "--backend");
  const ok = b.available();
  if (ok !== true) throw new UserError(`backend '${name}' is not available here: ${ok}`, "--backend");
  return b;
}

registerBackend({
  name: "cpu",
  description: "the reference executor (f32 on the host; the numerical oracle)",
  available: () => true,
  execute: async (graph, feeds, options) => cpuExecute(graph, feeds, { seed: options.seed }).outputs,
});

registerBackend(ptxEmuBackend);
registerBackend(cudaBackend);
