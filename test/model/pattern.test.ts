// Pins the op chain a window attention traces to (the header of model/perceptnet/window-attention.ts),
// so the pass that fuses window attention can rely on it: a change here is a change to that pass's
// contract. Constants and parameters are left out (CSE shares them between blocks).

import { describe, expect, it } from "vitest";
import { traceModel } from "../../compiler/dsl/index.ts";
import type { Graph } from "../../compiler/ir/index.ts";
import { cse, dce } from "../../compiler/passes/index.ts";
import perceptnet from "../../model/perceptnet.ts";

function attentionOps(graph: Graph, scope: string): string[] {
  return graph.nodes
    .filter((n) => (n.scope === scope || n.scope?.startsWith(`${scope}.`)) && n.op !== "const" && n.op !== "param")
    .map((n) => n.op);
}

const partition = ["pad", "roll", "reshape", "permute", "reshape"];
const splitQkv = ["reshape", "permute", "slice", "reshape", "slice", "reshape", "slice", "reshape"];
const output = ["softmax", "matmul", "permute", "reshape", "permute", "matmul", "add"];
const reverse = ["reshape", "permute", "reshape", "roll", "slice", "slice"];
const mask = ["reshape", "add", "reshape"];

describe("window attention op chain", () => {
  it("V1 (swin-t, shifted block): scaled dot product + gathered bias table + shift mask", () => {
    const g = dce(cse(traceModel(perceptnet, { config: "swin-t" }).graph));
    expect(attentionOps(g, "stages.0.blocks.1.attn")).toEqual([
      ...partition,
      ...["permute", "matmul", "add"], // qkv linear
      ...splitQkv,
      ...["mul", "permute", "matmul"], // q * d^-0.5 @ k^T
      ...["take", "permute", "add"], // bias table rows by the relative index
      ...mask,
      ...output,
      ...reverse,
    ]);
    // an unshifted block: no roll, no mask
    const plain = attentionOps(g, "stages.0.blocks.0.attn");
    expect(plain.filter((o) => o === "roll").length).toBe(0);
    expect(plain.length).toBe(attentionOps(g, "stages.0.blocks.1.attn").length - 2 - mask.length);
  });

  it("V2 (xxs, shifted block): q/v bias, cosine attention with clamped scale, CPB MLP bias, shift mask", () => {
    const g = dce(cse(traceModel(perceptnet, { config: "xxs" }).graph));
    const normalize = ["mul", "sum", "sqrt", "maximum", "div"];
    expect(attentionOps(g, "stages.0.blocks.1.attn")).toEqual([
      ...partition,
      ...["concat", "permute", "matmul", "add"], // qkv with concat(qBias, 0, vBias)
      ...splitQkv,
      ...["minimum", "exp"], // exp(min(logit scale, log 100))
      ...normalize,
      ...normalize,
      ...["permute", "matmul", "mul"],
      ...["permute", "matmul", "add", "relu", "permute", "matmul"], // CPB MLP over the coordinate table
      ...["take", "permute", "sigmoid", "mul", "add"], // 16 * sigmoid(gathered)
      ...mask,
      ...output,
      ...reverse,
    ]);
    // Stage 2 (4x4 map, window 4) is one window: its odd block is not shifted.
    expect(attentionOps(g, "stages.2.blocks.1.attn")).not.toContain("roll");
  });
});
