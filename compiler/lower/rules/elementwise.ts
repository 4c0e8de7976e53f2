// Elementwise regions -> one generated kernel each (kernels/elementwise-graph.ts). Intermediates of
// bf16 type are rounded where the unfused graph would store them, so the kernel reproduces the CPU
// executor; the vector width is the largest that divides the last dim and every operand's offset.

import { elementwiseFromGraph } from "../../../kernels/elementwise-graph.ts";
import type { Node } from "../../ir/index.ts";
import type { LowerContext } from "../context.ts";
import { contentNamed } from "../naming.ts";

export function lowerRegion(ctx: LowerContext, root: Node, o: { roundBf16?: boolean } = {}): void {
  const nodes = ctx.analysis.regions.get(root.id);
  if (!nodes) throw new Error(`lower: %${root.id} is not a region output`);
  const inside = new Set(nodes);
  const operands = [...new Set(nodes.flatMap((id) => ctx.graph.node(id).inputs.filter((i) => !inside.has(i))))];
  const last = root.shape.length ? root.shape[root.shape.length - 1] : 1;
  const offsets = operands.map((i) => ctx.elementOffset(ctx.bufferOf(i)));
  const vec = [8, 4, 2, 1].find((v) => last % v === 0 && offsets.every((off) => off % v === 0)) ?? 1;
  let inputs: readonly number[] = [];
  const named = contentNamed("ew", (name) => {
    const r = elementwiseFromGraph(name, { graph: ctx.graph, nodes, output: root.id }, { vec, roundBf16: o.roundBf16 });
    inputs = r.inputs;
    return r.kernel;
  });
  const out = ctx.define(root);
  const args: Record<string, { buffer: number }> = { out: { buffer: out } };
  inputs.forEach((id, i) => {
    args[`in${i}`] = { buffer: ctx.bufferOf(id) };
  });
  ctx.launch(named, args, { writes: ["out"], nodes });
}
