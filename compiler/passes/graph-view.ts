// A read-only view of a graph for pattern matching: who reads each node, and small predicates the
// fusion passes use to check a node's op, attributes and constants exactly (a pattern that does not
// match exactly is left alone).

import type { Graph, Node } from "../ir/index.ts";
import { numel } from "../ir/index.ts";

export class GraphView {
  readonly users: number[][];
  readonly outputs: ReadonlySet<number>;
  constructor(readonly graph: Graph) {
    this.users = graph.nodes.map(() => []);
    for (const n of graph.nodes) for (const i of new Set(n.inputs)) this.users[i].push(n.id);
    this.outputs = new Set(graph.outputs.values());
  }

  node(id: number): Node {
    return this.graph.node(id);
  }

  /** The node `id` if it is `op`. */
  is(id: number | undefined, op: string): Node | undefined {
    if (id === undefined) return undefined;
    const n = this.graph.node(id);
    return n.op === op ? n : undefined;
  }

  /** The only reader of `id` (undefined when it has none, several, or is a graph output). */
  soleUser(id: number): Node | undefined {
    const u = this.users[id];
    return u.length === 1 && !this.outputs.has(id) ? this.graph.node(u[0]) : undefined;
  }

  /** The value of a one-element constant. */
  scalarConst(id: number): number | undefined {
    const n = this.graph.node(id);
    if (n.op !== "const" || numel(n.shape) !== 1) return undefined;
    return (n.attrs.data as Float32Array | Int32Array)[0];
  }

  /** A constant's values (a one-element `data` broadcasts to the whole shape). */
  constValues(id: number): Float32Array | Int32Array | undefined {
    const n = this.graph.node(id);
    return n.op === "const" ? (n.attrs.data as Float32Array | Int32Array) : undefined;
  }

  /**
   * True when every node of `interior` is read only by nodes of `interior` and is not a graph
   * output, except `root` (whose readers will read the replacement).
   */
  closed(interior: ReadonlySet<number>, root: number): boolean {
    for (const id of interior) {
      if (id === root) continue;
      if (this.outputs.has(id)) return false;
      if (this.users[id].some((u) => !interior.has(u))) return false;
    }
    return true;
  }
}

export function sameNumbers(a: unknown, b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The other operand of a binary node, given one of them (undefined if `id` is not an operand). */
export function otherOperand(n: Node, id: number): number | undefined {
  if (n.inputs.length !== 2) return undefined;
  if (n.inputs[0] === id) return n.inputs[1];
  if (n.inputs[1] === id) return n.inputs[0];
  return undefined;
}
