// A readable listing of a graph, one line per node, in the spirit of JAX's jaxpr:
//   %7 = matmul %5, %6 {transB=true} : f32[2,49,96]    @ model/swin.ts:41

import type { Graph } from "./graph.ts";
import { type AttrValue, formatShape, type Node } from "./types.ts";

function formatAttr(v: AttrValue): string {
  if (v instanceof Float32Array || v instanceof Int32Array) {
    return v.length === 1 ? String(v[0]) : `<${v.length} values>`;
  }
  if (Array.isArray(v)) return `[${v.map((x) => (Array.isArray(x) ? `[${x.join(",")}]` : String(x))).join(",")}]`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

export function formatNode(n: Node): string {
  const type = `${n.dtype}${formatShape(n.shape)}`;
  let head: string;
  if (n.op === "input" || n.op === "param") {
    head = `${n.op} ${JSON.stringify(n.attrs.name)}`;
  } else {
    const args = n.inputs.map((i) => `%${i}`).join(", ");
    const attrs = Object.entries(n.attrs)
      .filter(([k]) => n.op !== "const" || k === "data")
      .map(([k, v]) => (n.op === "const" ? formatAttr(v) : `${k}=${formatAttr(v)}`));
    const attrText = attrs.length === 0 ? "" : n.op === "const" ? ` ${attrs[0]}` : ` {${attrs.join(", ")}}`;
    head = `${n.op}${args ? ` ${args}` : ""}${attrText}`;
  }
  const line = `%${n.id} = ${head} : ${type}`;
  const where = [n.scope, n.loc ? `${n.loc.file}:${n.loc.line}` : undefined].filter(Boolean).join(" ");
  return where ? `${line.padEnd(72)} @ ${where}` : line;
}

export function printGraph(g: Graph, name = "graph"): string {
  const ins = g
    .inputs()
    .map((n) => `${String(n.attrs.name)}: ${n.dtype}${formatShape(n.shape)}`)
    .join(", ");
  const body = g.nodes.map((n) => `  ${formatNode(n)}`);
  const outs = [...g.outputs].map(([k, id]) => `${k}: %${id}`).join(", ");
  return [`${name}(${ins}) {`, ...body, `  return { ${outs} }`, "}", ""].join("\n");
}
