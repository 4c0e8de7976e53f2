// The oracle side of the kernel tests: a small graph built from IR ops, executed by runtime/cpu.

import { type DType, Graph, type Node } from "../../compiler/ir/index.ts";
import { execute, type HostTensor } from "../../runtime/cpu/index.ts";

export type GraphInput = (name: string, dtype?: DType) => Node;

/**
 * Builds a graph whose inputs are the named feeds (declared with `dtype`, default the feed's), runs it
 * on the CPU executor and returns the named outputs.
 */
export function cpuReference(
  feeds: Record<string, HostTensor>,
  build: (g: Graph, input: GraphInput) => Record<string, Node>,
): Record<string, HostTensor> {
  const g = new Graph();
  const input: GraphInput = (name, dtype) => {
    const t = feeds[name];
    if (!t) throw new Error(`no feed ${name}`);
    return g.add("input", [], { name, shape: [...t.shape], dtype: dtype ?? t.dtype });
  };
  const outs = build(g, input);
  for (const [name, n] of Object.entries(outs)) g.setOutput(name, n.id);
  const r = execute(g, { inputs: feeds, params: {} });
  return Object.fromEntries(Object.keys(outs).map((k) => [k, r.outputs.get(k)!]));
}

/** A scalar constant node. */
export function constNode(g: Graph, value: number, dtype: DType = "f32"): Node {
  return g.add("const", [], { shape: [], dtype, data: Float32Array.of(value) });
}
