// The Graph: SSA nodes in topological order (a node's id is its index) and named outputs.
// Every node is created through `add`, which runs the op's shape rule, so a graph is always
// well-typed.

import { ShapeError } from "./errors.ts";
import { opSpec } from "./ops/index.ts";
import type { Attrs, Node, SourceLoc, TensorType } from "./types.ts";

export class Graph {
  readonly nodes: Node[] = [];
  readonly outputs = new Map<string, number>();

  add(op: string, inputs: readonly number[], attrs: Attrs = {}, loc?: SourceLoc, scope?: string): Node {
    const spec = opSpec(op);
    const arity = spec.inputs;
    if (arity !== "variadic" && (inputs.length < arity || inputs.length > (spec.maxInputs ?? arity))) {
      throw new Error(`${op}: expected ${arity} inputs, got ${inputs.length}`);
    }
    for (const i of inputs) {
      if (!(i >= 0 && i < this.nodes.length)) throw new Error(`${op}: input %${i} is not in the graph`);
    }
    let type: TensorType;
    try {
      type = spec.infer(
        inputs.map((i) => this.nodes[i]),
        attrs,
      );
    } catch (e) {
      if (e instanceof ShapeError && loc) throw new ShapeError(e.message, loc);
      throw e;
    }
    const node: Node = {
      id: this.nodes.length,
      op,
      inputs: [...inputs],
      attrs,
      shape: [...type.shape],
      dtype: type.dtype,
      ...(loc ? { loc } : {}),
      ...(scope ? { scope } : {}),
    };
    this.nodes.push(node);
    return node;
  }

  /** Appends a copy of `n` (from another graph) with remapped inputs, keeping its location and scope. */
  copy(n: Node, inputs: readonly number[]): Node {
    return this.add(n.op, inputs, n.attrs, n.loc, n.scope);
  }

  setOutput(name: string, id: number): void {
    if (!(id >= 0 && id < this.nodes.length)) throw new Error(`output ${name}: %${id} is not in the graph`);
    this.outputs.set(name, id);
  }

  node(id: number): Node {
    const n = this.nodes[id];
    if (!n) throw new Error(`no node %${id}`);
    return n;
  }

  inputs(): Node[] {
    return this.nodes.filter((n) => n.op === "input");
  }

  params(): Node[] {
    return this.nodes.filter((n) => n.op === "param");
  }

  /** How many nodes read each node (outputs count as readers). */
  useCounts(): number[] {
    const uses = new Array<number>(this.nodes.length).fill(0);
    for (const n of this.nodes) for (const i of n.inputs) uses[i]++;
    for (const id of this.outputs.values()) uses[id]++;
    return uses;
  }
}
