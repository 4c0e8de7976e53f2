// What the trainer needs from a backend: prepare a graph once, then run it many times. It wraps a
// backend of the shared registry (runtime/run: cpu today; ptx-emu and cuda register themselves),
// so a GPU backend that keeps weights resident and compiles once per graph plugs in unchanged
// (it can key its compiled programs on the graph object it is given).

import type { Graph } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import { type Backend, getBackend } from "../run/backend.ts";

export type TensorMap = ReadonlyMap<string, HostTensor>;

export interface RunFeeds {
  readonly inputs: TensorMap;
  readonly params: TensorMap;
}

export interface CompiledGraph {
  /** Runs the graph; `seed` keys its dropout / drop-path masks. Returns the named outputs. */
  run(feeds: RunFeeds, options: { seed: number }): Promise<Map<string, HostTensor>>;
}

export interface Executor {
  readonly name: string;
  /** Devices taking part (the data-parallel world size): gradients are averaged over them. */
  readonly worldSize: number;
  /** Prepares `graph` for repeated runs; `label` names it in errors and profiles. */
  compile(graph: Graph, label: string): CompiledGraph;
}

/** A single-device executor over a registered backend. */
export function executorFor(backend: Backend): Executor {
  return {
    name: backend.name,
    worldSize: 1,
    compile(graph: Graph): CompiledGraph {
      return { run: (feeds, options) => backend.execute(graph, feeds, options) };
    },
  };
}

/** The named backend (--backend), as an executor; a UserError when unknown or unavailable. */
export function executorNamed(name: string): Executor {
  return executorFor(getBackend(name));
}
