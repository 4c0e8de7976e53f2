// The HBM byte estimate (compiler/passes/hbm-bytes.ts) on graphs small enough to count by hand.

import { describe, expect, it } from "vitest";
import { Graph } from "../../compiler/ir/index.ts";
import { hbmBytes, nodeBytes } from "../../compiler/passes/index.ts";

describe("hbmBytes", () => {
  it("counts inputs read + output written per kernel; views and leaves are free; layout ops are copies", () => {
    const g = new Graph();
    const x = g.add("input", [], { name: "x", shape: [4, 8], dtype: "f32" }).id; // 0 B (a leaf)
    const w = g.add("param", [], { name: "w", shape: [16, 8], dtype: "f32" }).id; // 0 B
    const b = g.add("param", [], { name: "b", shape: [16], dtype: "f32" }).id; // 0 B
    const wt = g.add("permute", [w], { perm: [1, 0] }).id; // copy: 128*4 in + 128*4 out = 1024
    const y = g.add("matmul", [x, wt]).id; // 32*4 + 128*4 + 64*4 = 896
    const yb = g.add("add", [y, b]).id; // 64*4 + 16*4 (bias at its own size) + 64*4 = 576
    const h = g.add("cast", [yb], { dtype: "bf16" }).id; // 64*4 + 64*2 = 384
    const r = g.add("reshape", [h], { shape: [4, 4, 4] }).id; // a view: 0
    const sq = g.add("mul", [r, r]).id; // one distinct input: 64*2 + 64*2 = 256
    const c = g.add("const", [], { shape: [], dtype: "bf16", data: Float32Array.of(2) }).id; // 0
    const s = g.add("mul", [sq, c]).id; // 64*2 + 1*2 + 64*2 = 258
    const p = g.add("pad", [s], { pads: [0, 0, 0, 1, 0, 0], value: 0 }).id; // 64*2 + 80*2 = 288
    g.setOutput("p", p);
    const want = 1024 + 896 + 576 + 384 + 256 + 258 + 288;
    expect(hbmBytes(g).total).toBe(want);
    expect(hbmBytes(g).byOp).toEqual({ permute: 1024, matmul: 896, add: 576, cast: 384, mul: 514, pad: 288 });
    expect([x, w, b, r, c].map((id) => nodeBytes(g, g.node(id)))).toEqual([0, 0, 0, 0, 0]);
  });

  it("fused ops: windowAttention reads qkv + table (+ pad value) and writes its map; segment views are free", () => {
    const g = new Graph();
    const qkv = g.add("input", [], { name: "qkv", shape: [1, 6, 6, 24], dtype: "bf16" }).id;
    const table = g.add("param", [], { name: "t", shape: [25, 2], dtype: "bf16" }).id;
    const pad = g.add("param", [], { name: "p", shape: [24], dtype: "bf16" }).id;
    const attrs = { heads: 2, window: 3, shift: [1, 1], cosine: false, qScale: 0.5, maskValue: -100, padInput: true };
    const o = g.add("windowAttention", [qkv, table, pad], attrs).id; // (864 + 50 + 24) * 2 + 288 * 2 = 2452
    const bw = g.add("windowAttentionBackward", [qkv, o, o, table, pad], attrs).id; // (864 + 288 + 50 + 24) * 2 + (864 + 50 + 24) * 2 = 4328
    const seg = g.add("segment", [bw], { offset: 864, shape: [25, 2] }).id; // 0
    g.setOutput("d", seg);
    expect(hbmBytes(g).byOp).toEqual({ windowAttention: 2452, windowAttentionBackward: 4328 });
  });
});
