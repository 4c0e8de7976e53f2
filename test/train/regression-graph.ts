// A small regression model as a hand-built graph, for the device data-parallel tests (CI on the
// emulator, test/gpu on a GPU): two ZeRO units (blocks.0 and the root), dropout, LayerNorm, and an
// optional bf16 compute path shaped like the nn modules' (f32 masters cast to bf16).
import { Graph } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../../runtime/cpu/index.ts";
import { randomTensor } from "../kernels/harness.ts";

/**
 * loss = mean((layerNorm(dropout(gelu(x w1 + b1))) w2 - t)^2) in blocks.0 / head scopes, so ZeRO
 * sees two units. With `bf16`: the parameters are cast to bf16 (as nn modules do under
 * --precision bf16) and the loss is cast back to f32.
 */
export function regressionGraph(bf16: boolean): Graph {
  const g = new Graph();
  const dt = bf16 ? "bf16" : "f32";
  const param = (name: string, shape: number[], init: string, args: number[]) => {
    const p = g.add("param", [], { name, shape, dtype: "f32", init, initArgs: args });
    return bf16 ? g.add("cast", [p.id], { dtype: "bf16" }, undefined, name.split(".").slice(0, -1).join(".")) : p;
  };
  const cast = (id: number) => (bf16 ? g.add("cast", [id], { dtype: dt }).id : id);
  const x = cast(g.add("input", [], { name: "x", shape: [4, 8, 32], dtype: "f32" }).id);
  const t = cast(g.add("input", [], { name: "t", shape: [4, 8, 16], dtype: "f32" }).id);
  const w1 = param("blocks.0.fc1.weight", [32, 64], "normal", [0.2]);
  const b1 = param("blocks.0.fc1.bias", [64], "normal", [0.1]);
  const gamma = param("blocks.0.norm.weight", [64], "ones", []);
  const w2 = param("head.weight", [64, 16], "normal", [0.2]);
  const s = "blocks.0";
  const h = g.add("gelu", [g.add("add", [g.add("matmul", [x, w1.id], {}, undefined, s).id, b1.id], {}, undefined, s).id], {
    approximate: "none",
  });
  const d = g.add("dropout", [h.id], { p: 0.25, stream: 1 }, undefined, s);
  const n = g.add("layerNorm", [d.id, gamma.id], { eps: 1e-5 }, undefined, s);
  const e = g.add("sub", [g.add("matmul", [n.id, w2.id], {}).id, t], {});
  const loss = g.add("mean", [g.add("mul", [e.id, e.id], {}).id], { axes: [0, 1, 2], keepdims: false });
  g.setOutput("loss", bf16 ? g.add("cast", [loss.id], { dtype: "f32" }).id : loss.id);
  return g;
}

/** The single process's micro-batch j of step `step` (its dropout seed: seedOf). */
export function batch(step: number, j: number): Map<string, HostTensor> {
  return new Map([
    ["x", randomTensor([4, 8, 32], 1000 + 10 * step + j, { bf16: false })],
    ["t", randomTensor([4, 8, 16], 2000 + 10 * step + j, { bf16: false })],
  ]);
}
export const seedOf = (step: number, j: number) => 7 + 10 * step + j;
