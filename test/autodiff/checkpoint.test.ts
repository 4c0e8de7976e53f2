// Activation checkpointing in grad(): `recompute` selects blocks whose forward the backward
// recomputes. Claims: (1) the gradients are bit-identical to grad() without it on the CPU executor
// (the copies run the same ops on the same inputs; drop-path masks come from the same stream and run
// seed); (2) the backward reads no value computed inside a checkpointed segment, only the copies and
// the segment's inputs; (3) the lowered plan's arena (runtime/exec's memory planner) shrinks; (4) the
// unit rule is runtime/plan's.
import { describe, expect, it } from "vitest";
import { checkpointUnitOf, checkpointUnits, grad, RECOMPUTE_ATTR, recomputeSegments } from "../../compiler/autodiff/index.ts";
import { traceModel } from "../../compiler/dsl/model.ts";
import { loadModel } from "../../compiler/frontend/load.ts";
import { Graph } from "../../compiler/ir/index.ts";
import { lowerGraph } from "../../compiler/lower/index.ts";
import { execute, initParams } from "../../runtime/cpu/index.ts";
import { planMemory } from "../../runtime/exec/memory-plan.ts";
import { unitOf } from "../../runtime/plan/profile.ts";
import { runInputs } from "../../runtime/run/inputs.ts";

const def = await loadModel("model/perceptnet.ts", { typecheck: false });
const xxs = (computeDType: "f32" | "bf16", imageSize: [number, number] = [32, 32]) =>
  traceModel(def, { config: "xxs", batch: 1, training: true, computeDType, imageSize });

describe("checkpoint units", () => {
  it("are runtime/plan's units: the deepest scope prefix ending in an index", () => {
    for (const s of [
      "stages.2.blocks.5.attn.qkv",
      "stages.2.blocks.5",
      "stages.2.downsample",
      "decoder.cross.1.q",
      "head",
      "0.x",
      "",
    ])
      expect(checkpointUnitOf(s), s).toBe(unitOf(s));
    expect(checkpointUnitOf("stages.2.blocks.5.attn.qkv")).toBe("stages.2.blocks.5");
    expect(checkpointUnitOf(undefined)).toBeUndefined();
    const g = xxs("f32").graph;
    for (const n of g.nodes) expect(checkpointUnitOf(n.scope), n.scope).toBe(unitOf(n.scope));
    const units = checkpointUnits(g);
    expect(units).toContain("stages.2.blocks.1");
    expect(units.filter((u) => u.includes(".blocks.")).length).toBe(8); // depths 2-2-2-2
  });

  it("segments are the runs of a checkpointed unit's nodes; sources neither belong nor break a run", () => {
    const g = new Graph();
    const x = g.add("input", [], { name: "x", shape: [4], dtype: "f32" });
    const a = g.add("exp", [x.id], {}, undefined, "blocks.0.f");
    const c = g.add("const", [], { shape: [], dtype: "f32", data: Float32Array.of(2) }, undefined, "blocks.0");
    const b = g.add("mul", [a.id, c.id], {}, undefined, "blocks.0.g");
    const mid = g.add("neg", [b.id], {}, undefined, "norm");
    const d = g.add("exp", [mid.id], {}, undefined, "blocks.0.f"); // blocks.0 again, after another scope
    const e = g.add("exp", [d.id], {}, undefined, "blocks.1");
    g.setOutput("y", g.add("sum", [e.id], { axes: [0], keepdims: false }).id);
    const plan = recomputeSegments(g, (u) => u === "blocks.0");
    expect(plan.segments.map((s) => [s.unit, s.nodes])).toEqual([
      ["blocks.0", [a.id, b.id]],
      ["blocks.0", [d.id]],
    ]);
    expect(plan.segmentOf[c.id]).toBe(-1);
    expect(plan.segmentOf[e.id]).toBe(-1);
  });
});

describe("grad with recompute", () => {
  for (const precision of ["f32", "bf16"] as const) {
    it(`PerceptNet xxs (${precision}, training: drop-path): every gradient bit-identical on the CPU executor; no kept value inside a checkpointed segment`, () => {
      const t = xxs(precision);
      const forward = t.graph;
      expect(forward.nodes.some((n) => n.op === "dropPath" && checkpointUnitOf(n.scope) !== undefined)).toBe(true);
      const plain = grad(forward, { loss: "loss" });
      const everything = grad(forward, { loss: "loss", recompute: () => true });
      // One stage only in f32 (the bf16 run checks every block).
      const stage2 =
        precision === "f32" ? grad(forward, { loss: "loss", recompute: (u) => u.startsWith("stages.2") }) : undefined;
      const params = initParams(forward, 1);
      const inputs = runInputs(forward, 5, undefined, undefined, def.sampleInputs?.(t.config, t.options, 5) ?? {});
      const run = (g: Graph) => execute(g, { inputs, params }, { seed: 9 }).outputs;
      const want = run(plain);
      for (const [what, g] of [
        ["all blocks", everything],
        ["stages.2", stage2],
      ] as const) {
        if (!g) continue;
        const got = run(g);
        expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [name, w] of want) expect(got.get(name)?.data, `${what}: ${name}`).toEqual(w.data);
      }
      // Recomputed copies exist (CSE did not fold them back into the forward), drop-path included.
      const copies = everything.nodes.filter((n) => n.attrs[RECOMPUTE_ATTR] !== undefined);
      expect(copies.some((n) => n.op === "dropPath")).toBe(true);
      expect(copies.some((n) => n.op === "matmul")).toBe(true);
      expect(plain.nodes.some((n) => n.attrs[RECOMPUTE_ATTR] !== undefined)).toBe(false);

      // Structure (unoptimised, so forward ids are the forward's): the backward reads no value of a
      // checkpointed segment except its outputs (values that forward nodes outside it read: the
      // next block's input, the checkpoints); everything inside is read from the copies.
      const raw = grad(forward, { loss: "loss", recompute: () => true, optimize: false });
      const segs = recomputeSegments(forward, () => true);
      const forwardEnd = forward.nodes.length;
      const boundary = new Set<number>();
      for (const n of forward.nodes)
        for (const i of n.inputs) if (segs.segmentOf[i] >= 0 && segs.segmentOf[i] !== segs.segmentOf[n.id]) boundary.add(i);
      for (const id of forward.outputs.values()) boundary.add(id);
      const internalReads = (g: Graph) => {
        const read = new Set<number>();
        for (const n of g.nodes.slice(forwardEnd))
          for (const i of n.inputs) if (i < forwardEnd && segs.segmentOf[i] >= 0 && !boundary.has(i)) read.add(i);
        return read;
      };
      expect([...internalReads(raw)].map((i) => `${forward.nodes[i].op} @ ${forward.nodes[i].scope}`)).toEqual([]);
      // Without recompute the backward reads hundreds of them (the activations checkpointing drops).
      const read = internalReads(grad(forward, { loss: "loss", optimize: false }));
      expect(read.size).toBeGreaterThan(100);
    });
  }

  it("shrinks the lowered gradient plan's arena (xxs, bf16, 64x64): numbers in compiler/autodiff/README.md", () => {
    const forward = xxs("bf16", [64, 64]).graph;
    const arena = (recompute?: (u: string) => boolean) =>
      planMemory(lowerGraph(grad(forward, { loss: "loss", recompute })).plan, {}).arenaBytes;
    const none = arena();
    const all = arena(() => true);
    // Measured 4,699,136 -> 3,267,072 bytes (69.5%). About 2.8 MB of the arena
    // are the 0.7M f32 parameter gradients (plan outputs, live to the end), which checkpointing
    // cannot drop.
    expect(all).toBeLessThan(0.75 * none);
  });
});
