// Lowering rules for the ops that are neither elementwise, data movement nor matmul chains (those
// have their own passes): one function per op name that emits the node's launches.

import type { Node } from "../../ir/index.ts";
import type { LowerContext } from "../context.ts";

export type LoweringRule = (ctx: LowerContext, node: Node) => void;

const rules = new Map<string, LoweringRule>();

export function registerLowering(op: string, rule: LoweringRule): void {
  if (rules.has(op)) throw new Error(`lowering for ${op} registered twice`);
  rules.set(op, rule);
}

export function loweringRule(op: string): LoweringRule | undefined {
  return rules.get(op);
}

export function loweredOps(): string[] {
  return [...rules.keys()];
}
