// Gradient rules by op name, one registry (as TensorFlow.js registers gradients per kernel name).
// A rule receives the forward node, its inputs and the incoming gradient dy (d loss / d node), and
// returns the gradient for each input (undefined: no gradient flows there). Rules emit ordinary
// graph ops through the Builder, so the backward pass is a graph every backend executes.

import type { Node } from "../ir/index.ts";
import type { Builder } from "./builder.ts";

export interface GradArgs {
  /** Emits into the training graph; its `loc` is the forward node's location. */
  readonly b: Builder;
  /** The forward node (ids are those of the training graph, which starts with the forward graph). */
  readonly node: Node;
  readonly inputs: readonly Node[];
  /** d loss / d node, same shape and dtype as the node. */
  readonly dy: number;
  /** needs[i]: input i leads to a differentiated parameter, so its gradient is wanted. */
  readonly needs: readonly boolean[];
}

/** One gradient per input, with that input's shape and dtype; undefined for none. */
export type GradRule = (args: GradArgs) => readonly (number | undefined)[];

const rules = new Map<string, GradRule>();

/** Registers the gradient of `op`; a second registration for the same op is an error. */
export function registerGradient(op: string, rule: GradRule): void {
  if (rules.has(op)) throw new Error(`gradient rule for ${op} registered twice`);
  rules.set(op, rule);
}

export function gradientRule(op: string): GradRule | undefined {
  return rules.get(op);
}

export function hasGradient(op: string): boolean {
  return rules.has(op);
}
