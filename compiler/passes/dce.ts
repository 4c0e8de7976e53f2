// Dead-code elimination: keeps the nodes the outputs depend on, plus every input and parameter
// (they are the graph's interface, even when unused).

import { Graph } from "../ir/index.ts";

export function dce(g: Graph): Graph {
  const live = new Array<boolean>(g.nodes.length).fill(false);
  const stack = [...g.outputs.values()];
  for (const n of g.nodes) if (n.op === "input" || n.op === "param") stack.push(n.id);
  while (stack.length > 0) {
    const id = stack.pop() as number;
    if (live[id]) continue;
    live[id] = true;
    stack.push(...g.nodes[id].inputs);
  }
  const out = new Graph();
  const remap: number[] = [];
  for (const n of g.nodes) {
    if (!live[n.id]) continue;
    remap[n.id] = out.copy(
      n,
      n.inputs.map((i) => remap[i]),
    ).id;
  }
  for (const [k, id] of g.outputs) out.setOutput(k, remap[id]);
  return out;
}
