// What the trainer needs from a backend: prepare a graph once, then run it on host feeds. The CPU
// backend wraps the reference executor; a GPU backend implements the same two calls (compiling to
// kernels in `compile`, keeping weights resident between `run`s), and the trainer does not change.

import type { Graph } from "../../compiler/ir/index.ts";
import { execute } from "../cpu/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";

export type TensorMap = ReadonlyMap<string, HostTensor>;

export interface RunFeeds {
  readonly inputs: TensorMap;
  readonly params: TensorMap;
}

export interface CompiledGraph {
  /** Runs the graph; `seed` keys its dropout / drop-path masks. Returns the named outputs. */
  run(feeds: RunFeeds, options: { seed: number }): Promise<Map<string, HostTensor>>;
}

export interface Backend {
  readonly name: string;
  /** Devices taking part (the data-parallel world size). */
  readonly worldSize: number;
  /** Prepares `graph` for repeated runs; `label` names it in errors and profiles. */
  compile(graph: Graph, label: string): CompiledGraph;
}

/** The reference executor: f32 arithmetic, bf16-typed values rounded to bf16 after every op. */
export const cpuBackend: Backend = {
  name: "cpu",
  worldSize: 1,
  compile(graph: Graph): CompiledGraph {
    return {
      async run(feeds, { seed }) {
        return execute(graph, feeds, { seed }).outputs;
      },
    };
  },
};
