// Graph <-> JSON. Typed-array attributes (constant data) are stored as base64 so large tables stay
// compact; loading re-adds every node through Graph.add, so a loaded graph is re-validated.

import { Graph } from "./graph.ts";
import type { Attrs, AttrValue, DType, SourceLoc } from "./types.ts";

interface NodeJSON {
  op: string;
  inputs: number[];
  attrs: Record<string, unknown>;
  shape: number[];
  dtype: DType;
  loc?: SourceLoc;
  scope?: string;
}

export interface GraphJSON {
  format: "ptc-graph";
  version: 1;
  nodes: NodeJSON[];
  outputs: Record<string, number>;
}

function encodeAttr(v: AttrValue): unknown {
  if (v instanceof Float32Array) return { $f32: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  if (v instanceof Int32Array) return { $i32: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  return v;
}

function decodeAttr(v: unknown): AttrValue {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const o = v as { $f32?: string; $i32?: string };
    const b64 = o.$f32 ?? o.$i32;
    if (b64 === undefined) throw new Error(`graph JSON: unknown attribute object ${JSON.stringify(v).slice(0, 60)}`);
    const buf = Buffer.from(b64, "base64");
    const copy = new Uint8Array(buf).buffer; // aligned copy
    return o.$f32 !== undefined ? new Float32Array(copy) : new Int32Array(copy);
  }
  return v as AttrValue;
}

export function graphToJSON(g: Graph): GraphJSON {
  return {
    format: "ptc-graph",
    version: 1,
    nodes: g.nodes.map((n) => ({
      op: n.op,
      inputs: [...n.inputs],
      attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, v]) => [k, encodeAttr(v)])),
      shape: [...n.shape],
      dtype: n.dtype,
      ...(n.loc ? { loc: n.loc } : {}),
      ...(n.scope ? { scope: n.scope } : {}),
    })),
    outputs: Object.fromEntries(g.outputs),
  };
}

export function graphFromJSON(json: GraphJSON): Graph {
  if (json.format !== "ptc-graph" || json.version !== 1) throw new Error("not a ptc graph (format/version)");
  const g = new Graph();
  json.nodes.forEach((n, i) => {
    const attrs: Attrs = Object.fromEntries(Object.entries(n.attrs).map(([k, v]) => [k, decodeAttr(v)]));
    const node = g.add(n.op, n.inputs, attrs, n.loc, n.scope);
    if (node.dtype !== n.dtype || node.shape.join() !== n.shape.join()) {
      throw new Error(
        `graph JSON: node %${i} (${n.op}) recorded as ${n.dtype}[${n.shape}] but infers ${node.dtype}[${node.shape}]`,
      );
    }
  });
  for (const [k, id] of Object.entries(json.outputs)) g.setOutput(k, id);
  return g;
}
