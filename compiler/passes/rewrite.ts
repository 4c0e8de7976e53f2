// Applies subgraph replacements: every matched subgraph's interior is dropped and its root is
// replaced by what `emit` builds from the outside values it reads. Nodes are copied in order, so
// the result stays topologically sorted (a replacement reads only nodes older than its root).

import { Graph } from "../ir/index.ts";
import { dce } from "./dce.ts";

export interface Replacement {
  /** The node whose value the replacement computes; its readers read the replacement instead. */
  readonly root: number;
  /** Nodes computed only for the root (the root included); none may be read from outside. */
  readonly interior: ReadonlySet<number>;
  /** Builds the replacement in `g`; `value(id)` maps an outside node of the old graph to `g`. */
  emit(g: Graph, value: (id: number) => number): number;
}

export function applyReplacements(g: Graph, replacements: readonly Replacement[]): Graph {
  const byRoot = new Map<number, Replacement>();
  const dropped = new Set<number>();
  for (const r of replacements) {
    for (const id of r.interior) {
      if (dropped.has(id)) throw new Error(`replacements overlap at %${id}`);
      dropped.add(id);
    }
    byRoot.set(r.root, r);
  }
  const out = new Graph();
  const remap: number[] = [];
  const value = (id: number) => {
    const v = remap[id];
    if (v === undefined) throw new Error(`replacement reads %${id}, which is inside a replaced subgraph`);
    return v;
  };
  for (const n of g.nodes) {
    const r = byRoot.get(n.id);
    if (r) {
      const id = r.emit(out, value);
      const got = out.node(id);
      if (got.shape.join() !== n.shape.join() || got.dtype !== n.dtype) {
        throw new Error(`replacement of %${n.id} gives ${got.dtype}[${got.shape}], expected ${n.dtype}[${n.shape}]`);
      }
      remap[n.id] = id;
      continue;
    }
    if (dropped.has(n.id)) continue;
    remap[n.id] = out.copy(n, n.inputs.map(value)).id;
  }
  for (const [k, id] of g.outputs) out.setOutput(k, value(id));
  return dce(out);
}
