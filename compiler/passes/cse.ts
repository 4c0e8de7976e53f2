// Common-subexpression elimination: nodes with the same op, inputs and attributes are computed once.
// Inputs and parameters are never merged (their names differ); constants merge by value.

import { type AttrValue, Graph, type Node } from "../ir/index.ts";

function attrKey(v: AttrValue): string {
  if (v instanceof Float32Array || v instanceof Int32Array) {
    // Content hash (FNV-1a over the bytes) plus length; collisions are resolved by a full compare.
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
    return `${v instanceof Float32Array ? "f" : "i"}${v.length}:${(h >>> 0).toString(16)}`;
  }
  return JSON.stringify(v);
}

function sameAttrs(a: Node, b: Node): boolean {
  for (const k of Object.keys(a.attrs)) {
    const x = a.attrs[k];
    const y = b.attrs[k];
    if ((x instanceof Float32Array || x instanceof Int32Array) && (y instanceof Float32Array || y instanceof Int32Array)) {
      if (x.length !== y.length || x.some((v, i) => v !== y[i])) return false;
    } else if (attrKey(x) !== attrKey(y)) return false;
  }
  return true;
}

export function cse(g: Graph): Graph {
  const out = new Graph();
  const remap: number[] = [];
  const seen = new Map<string, Node[]>();
  for (const n of g.nodes) {
    const inputs = n.inputs.map((i) => remap[i]);
    if (n.op !== "input" && n.op !== "param") {
      const key = `${n.op}(${inputs.join(",")}){${Object.keys(n.attrs)
        .sort()
        .map((k) => `${k}=${attrKey(n.attrs[k])}`)
        .join(";")}}`;
      const prior = seen.get(key)?.find((p) => sameAttrs(p, n));
      if (prior) {
        remap[n.id] = prior.id;
        continue;
      }
      const added = out.copy(n, inputs);
      remap[n.id] = added.id;
      seen.set(key, [...(seen.get(key) ?? []), added]);
      continue;
    }
    remap[n.id] = out.copy(n, inputs).id;
  }
  for (const [k, id] of g.outputs) out.setOutput(k, remap[id]);
  return out;
}
