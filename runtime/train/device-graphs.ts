// The small graphs and the graph rewrite the device data-parallel engine (device-parallel.ts) runs
// besides the model's own: the bf16 weights replica (where the gradient graph reads every trained
// parameter only as a bf16 cast, it may take bf16 parameters instead), this rank's part of the
// squared gradient norm, and the cast of the master shard to bf16.

import { Builder } from "../../compiler/autodiff/index.ts";
import { Graph } from "../../compiler/ir/index.ts";

/** True when every use of each named parameter in `graph` is a cast to bf16 (and none is an output). */
export function readOnlyAsBf16(graph: Graph, names: ReadonlySet<string>): boolean {
  const ids = new Set(
    graph
      .params()
      .filter((p) => names.has(String(p.attrs.name)))
      .map((p) => p.id),
  );
  if (ids.size !== names.size) return false;
  for (const id of graph.outputs.values()) if (ids.has(id)) return false;
  let used = 0;
  for (const n of graph.nodes) {
    for (const i of n.inputs) {
      if (!ids.has(i)) continue;
      if (n.op !== "cast" || n.attrs.dtype !== "bf16") return false;
      used++;
    }
  }
  return used > 0;
}

/** `graph` with the named f32 parameters taken in bf16: each cast of one to bf16 becomes the parameter. */
export function withBf16Params(graph: Graph, names: ReadonlySet<string>): Graph {
  const g = new Graph();
  const remap: number[] = [];
  const rewritten = new Set<number>();
  for (const n of graph.nodes) {
    if (n.op === "param" && names.has(String(n.attrs.name))) {
      remap[n.id] = g.add("param", [], { ...n.attrs, dtype: "bf16" }, n.loc, n.scope).id;
      rewritten.add(n.id);
    } else if (n.op === "cast" && n.attrs.dtype === "bf16" && rewritten.has(n.inputs[0])) {
      remap[n.id] = remap[n.inputs[0]];
    } else {
      remap[n.id] = g.copy(
        n,
        n.inputs.map((i) => remap[i]),
      ).id;
    }
  }
  for (const [name, id] of graph.outputs) g.setOutput(name, remap[id]);
  return g;
}

/** sum((grad x gradScale)^2) over a flat shard: this rank's part of the squared global norm. */
export function sumSquaresGraph(n: number): Graph {
  const g = new Graph();
  const b = new Builder(g);
  const scaled = b.mul(b.input("grad", [n]), b.input("gradScale", []));
  g.setOutput("sumSquares", b.sum(b.mul(scaled, scaled), [0]));
  return g;
}

/** cast(x) to bf16 over a flat f32 buffer: the master shard as the bf16 weights it becomes. */
export function castGraph(n: number): Graph {
  const g = new Graph();
  const b = new Builder(g);
  g.setOutput("y", b.cast(b.input("x", [n]), "bf16"));
  return g;
}
