// Reverse-mode differentiation of a graph: the training graph is the forward graph followed by the
// adjoint of every node that lies between a differentiated parameter and the loss, in reverse
// topological order. Gradients reaching a node along several uses are summed.

import { formatLoc, formatShape, Graph, type Node, numel, UserError } from "../ir/index.ts";
import { cse, dce } from "../passes/index.ts";
import { Builder } from "./builder.ts";
import { RECOMPUTE_ATTR, recomputeSegments } from "./checkpoint.ts";
import { gradientRule } from "./registry.ts";
import "./rules/index.ts";

export interface GradOptions {
  /** Name of the forward output to differentiate: a scalar (one element), f32 or bf16. */
  readonly loss: string;
  /** Parameter names to differentiate; default every floating-point parameter. */
  readonly wrt?: readonly string[];
  /** Graph input names to differentiate too (outputs `gradInput/<name>`); default none. */
  readonly wrtInputs?: readonly string[];
  /** Run CSE and DCE on the result (default true). */
  readonly optimize?: boolean;
  /**
   * Activation checkpointing: the checkpoint units (repeated blocks, `checkpointUnitOf`) whose
   * forward the backward recomputes instead of keeping its values; called once per unit name.
   * Default: none (every value the backward reads is kept).
   */
  readonly recompute?: (unit: string) => boolean;
}

/** Output name of a parameter's gradient in the training graph. */
export const gradName = (param: string): string => `grad/${param}`;
/** Output name of an input's gradient in the training graph. */
export const gradInputName = (input: string): string => `gradInput/${input}`;

function pick(nodes: readonly Node[], names: readonly string[] | undefined, kind: string): Node[] {
  const byName = new Map(nodes.map((n) => [String(n.attrs.name), n]));
  if (names === undefined) return nodes.filter((n) => n.dtype !== "i32");
  return names.map((name) => {
    const n = byName.get(name);
    if (!n) throw new UserError(`grad: no ${kind} named '${name}' (have: ${[...byName.keys()].slice(0, 8).join(", ")}...)`, name);
    if (n.dtype === "i32") throw new UserError(`grad: ${kind} '${name}' is i32 and has no gradient`, name);
    return n;
  });
}

/**
 * Differentiates `forward` with respect to its parameters (and optionally inputs). The result has
 * the same inputs and parameters, every forward output under its name, and `grad/<param>` for each
 * differentiated parameter (in the parameter's dtype: an f32 master used through a bf16 cast gets
 * an f32 gradient, since the cast's gradient casts back). A parameter the loss does not depend on
 * gets a zero gradient.
 */
export function grad(forward: Graph, options: GradOptions): Graph {
  const lossId = forward.outputs.get(options.loss);
  if (lossId === undefined) {
    throw new UserError(`grad: the graph has no output '${options.loss}' (outputs: ${[...forward.outputs.keys()].join(", ")})`);
  }
  const lossNode = forward.node(lossId);
  if (numel(lossNode.shape) !== 1 || lossNode.dtype === "i32") {
    throw new UserError(
      `grad: the loss '${options.loss}' must be a floating-point scalar, got ${lossNode.dtype}${formatShape(lossNode.shape)}`,
      formatLoc(lossNode.loc),
    );
  }
  const params = pick(forward.params(), options.wrt, "parameter");
  const inputs = pick(forward.inputs(), options.wrtInputs ?? [], "input");

  const g = new Graph();
  for (const n of forward.nodes) g.copy(n, n.inputs);
  const b = new Builder(g);

  // Which nodes carry a gradient: the differentiated leaves and every float node computed from one.
  const needs = new Array<boolean>(forward.nodes.length).fill(false);
  for (const n of [...params, ...inputs]) needs[n.id] = true;
  for (const n of forward.nodes) {
    if (!needs[n.id] && n.dtype !== "i32" && n.inputs.some((i) => needs[i])) needs[n.id] = true;
  }

  const pending = new Map<number, number[]>();
  const contribute = (id: number, dy: number) => {
    const list = pending.get(id);
    if (list) list.push(dy);
    else pending.set(id, [dy]);
  };
  b.loc = lossNode.loc;
  contribute(lossId, b.full(lossNode.shape, 1, lossNode.dtype));

  // Checkpointing: a segment's forward is copied in when the backward first reaches it, and its
  // nodes' rules read the copies (values from outside the segment stay the forward's).
  const plan = options.recompute ? recomputeSegments(forward, options.recompute) : undefined;
  const recomputed = new Map<number, number>(); // forward id -> its recomputed copy
  const segmentOf = (id: number) => plan?.segmentOf[id] ?? -1;
  const within = (seg: number, id: number) => (seg >= 0 && segmentOf(id) === seg ? (recomputed.get(id) ?? id) : id);
  const materialise = (seg: number) => {
    const s = (plan as NonNullable<typeof plan>).segments[seg];
    if (recomputed.has(s.nodes[0])) return;
    for (const id of s.nodes) {
      const n = forward.nodes[id];
      const copy = g.add(
        n.op,
        n.inputs.map((i) => within(seg, i)),
        { ...n.attrs, [RECOMPUTE_ATTR]: s.unit },
        n.loc,
        n.scope,
      );
      recomputed.set(id, copy.id);
    }
  };
  // What a rule sees of a forward node: its value (the recomputed copy inside a segment) with the
  // forward's attributes (so a rule that re-emits the op does not carry the recompute mark).
  const seen = (seg: number, id: number): Node => {
    const v = within(seg, id);
    return v === id ? g.node(id) : { ...g.node(v), attrs: forward.nodes[id].attrs };
  };

  const total = new Map<number, number>();
  for (let id = lossId; id >= 0; id--) {
    const list = pending.get(id);
    if (!list || !needs[id]) continue;
    pending.delete(id);
    const node = forward.nodes[id];
    b.loc = node.loc;
    b.scope = node.scope;
    const dy = list.reduce((acc, d) => b.add(acc, d));
    if (node.op === "param" || node.op === "input") {
      total.set(id, dy);
      continue;
    }
    const rule = gradientRule(node.op);
    if (!rule) {
      throw new UserError(
        `no gradient rule for op '${node.op}' (register one with registerGradient; see compiler/autodiff/README.md)`,
        formatLoc(node.loc),
      );
    }
    const seg = segmentOf(id);
    if (seg >= 0) materialise(seg);
    const ins = node.inputs.map((i) => (seg >= 0 ? seen(seg, i) : forward.nodes[i]));
    const grads = rule({ b, node: seen(seg, id), inputs: ins, dy, needs: node.inputs.map((i) => needs[i]) });
    node.inputs.forEach((inId, k) => {
      const d = grads[k];
      if (d === undefined || !needs[inId]) return;
      const want = forward.nodes[inId];
      const got = g.node(d);
      if (got.shape.join() !== want.shape.join() || got.dtype !== want.dtype) {
        throw new Error(
          `gradient rule for ${node.op} (${formatLoc(node.loc)}) gave input ${k} a gradient ${got.dtype}${formatShape(got.shape)}, ` +
            `expected ${want.dtype}${formatShape(want.shape)}`,
        );
      }
      contribute(inId, d);
    });
  }

  const names = new Set(forward.outputs.keys());
  const output = (name: string, id: number) => {
    if (names.has(name)) throw new UserError(`grad: output name '${name}' is already taken by the forward graph`);
    names.add(name);
    g.setOutput(name, id);
  };
  for (const [name, id] of forward.outputs) g.setOutput(name, id);
  b.loc = undefined;
  b.scope = undefined;
  for (const p of params) output(gradName(String(p.attrs.name)), total.get(p.id) ?? b.full(p.shape, 0, p.dtype));
  for (const x of inputs) output(gradInputName(String(x.attrs.name)), total.get(x.id) ?? b.full(x.shape, 0, x.dtype));
  return options.optimize === false ? g : dce(cse(g));
}
