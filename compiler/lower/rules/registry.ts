// Lowering rules for the ops that are neither elementwise, data movement nor matmul chains (those
// have their own passes): one function per op name that emits the node's launches, and optionally
// which configurations it has kernels for (a reason when not), so a build can tell before lowering.

import type { Graph, Node } from "../../ir/index.ts";
import type { LowerContext } from "../context.ts";

export type LoweringRule = (ctx: LowerContext, node: Node) => void;
/** undefined when the node's configuration has a kernel, else why not. */
export type LoweringSupport = (node: Node, graph: Graph) => string | undefined;

const rules = new Map<string, { rule: LoweringRule; supports?: LoweringSupport }>();

export function registerLowering(op: string, rule: LoweringRule, supports?: LoweringSupport): void {
  if (rules.has(op)) throw new Error(`lowering for ${op} registered twice`);
  rules.set(op, { rule, supports });
}

export function loweringRule(op: string): LoweringRule | undefined {
  return rules.get(op)?.rule;
}

/** Why `node` cannot be lowered, or undefined when it can. */
export function whyUnlowerable(node: Node, graph: Graph): string | undefined {
  const r = rules.get(node.op);
  if (!r) return "no lowering rule";
  return r.supports?.(node, graph);
}

export function loweredOps(): string[] {
  return [...rules.keys()];
}
