// ptc build's lower and codegen stages: kernels/*.ptx and *.cubin, the kernel table and plan.json
// (which round-trips and runs on the emulator), the summary and --json keys, --no-kernels, the
// choice of the unfused graph while fused ops have no kernels, ptxas failures (kernel, message,
// repro), and an op without a kernel as a located UserError.

import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PtxasError } from "../../compiler/codegen/ptxas.ts";
import { type AnyTensor, defineModel, instance, spec, traceModel } from "../../compiler/dsl/index.ts";
import { writeKernels } from "../../compiler/frontend/kernels-stage.ts";
import { lowerStage } from "../../compiler/frontend/lower-stage.ts";
import { Graph, graphFromJSON, isUserError, type UserError } from "../../compiler/ir/index.ts";
import { lowerGraph, planFromJSON, unloweredOps } from "../../compiler/lower/index.ts";
import { cse, dce, fuse } from "../../compiler/passes/index.ts";
import { SwinBlockV1 } from "../../model/perceptnet/blocks.ts";
import { execute } from "../../runtime/cpu/index.ts";
import { randomNormal } from "../../runtime/run/index.ts";
import { runPtc } from "../helpers/cli.ts";
import { runPlan } from "./run-plan.ts";

const example = "model/examples/mlp.ts";
const tmp = () => mkdtempSync(path.join(tmpdir(), "ptc-lower-build-"));

describe("ptc build writes kernels", () => {
  it("kernels/*.ptx, *.cubin, kernels.json/txt and plan.json; the plan runs and matches the CPU", () => {
    const out = tmp();
    const r = runPtc(["build", example, "--json", "--out", out, "--no-typecheck"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.kernels).toMatchObject({ graph: "fused", reason: null, spills: 0 });
    expect(s.kernels.kernels).toBeGreaterThan(2);
    expect(s.kernels.launches).toBeGreaterThanOrEqual(s.kernels.kernels);
    expect(s.kernels.ptxas).toMatch(/^ptxas \d+\.\d+/);
    expect(s.kernels.assembled).toBe(s.kernels.kernels);
    expect(s.timings.lower).toBeGreaterThan(0);
    expect(s.timings.codegen).toBeGreaterThan(0);
    for (const key of ["params", "flops", "nodes", "ops", "fusions", "hbmBytes", "artifacts"]) expect(s).toHaveProperty(key);

    const table = JSON.parse(readFileSync(path.join(out, "kernels", "kernels.json"), "utf8"));
    expect(table.kernels).toHaveLength(s.kernels.kernels);
    for (const k of table.kernels) {
      expect(existsSync(path.join(out, k.ptx))).toBe(true);
      expect(existsSync(path.join(out, k.cubin))).toBe(true);
      expect(k.spillStoreBytes + k.spillLoadBytes).toBe(0);
      expect(k.occupancy.fraction).toBeGreaterThan(0);
    }
    expect(readFileSync(path.join(out, "kernels", "kernels.txt"), "utf8")).toMatch(/^# assembled by ptxas/);

    // plan.json round-trips, and runs: the emulator's logits match the CPU's run of graph.json.
    const plan = planFromJSON(JSON.parse(readFileSync(path.join(out, "plan.json"), "utf8")));
    expect(plan.launches).toHaveLength(s.kernels.launches);
    const graph = graphFromJSON(JSON.parse(readFileSync(path.join(out, "graph.json"), "utf8")));
    const feeds = {
      inputs: new Map(graph.inputs().map((n) => [String(n.attrs.name), randomNormal(n.shape, 1, "x")])),
      params: new Map(graph.params().map((n) => [String(n.attrs.name), randomNormal(n.shape, 2, String(n.attrs.name))])),
    };
    const got = runPlan(plan, feeds).outputs.get("logits")?.data as Float32Array;
    const want = execute(graph, feeds).outputs.get("logits")?.data as Float32Array;
    const scale = Math.max(...Array.from(want, Math.abs));
    for (let i = 0; i < want.length; i++)
      expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(2e-6 * scale + 2e-6 * Math.abs(want[i]));
  });

  it("--no-kernels stops after the graph; the human summary has a kernels line otherwise", () => {
    const out = tmp();
    const r = runPtc(["build", example, "--json", "--no-kernels", "--out", out, "--no-typecheck"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).kernels).toBeNull();
    expect(existsSync(path.join(out, "plan.json"))).toBe(false);
    expect(existsSync(path.join(out, "graph.json"))).toBe(true);
    const human = runPtc(["build", example, "--out", tmp(), "--no-typecheck"]);
    expect(human.stdout).toMatch(
      /kernels\s+\d+ kernels, \d+ launches, \d+ buffers \(fused graph\); \d+ assembled by ptxas [\d.]+ for sm_80, no spills/,
    );
    expect(runPtc(["build", "--help"]).stdout).toContain("--no-kernels");
  });
});

describe("lowering choices and errors", () => {
  it("lowers the unfused graph, and says why, while a fused op has no kernel", () => {
    // bf16 with a head dim of 12: the tensor-core kernels need multiples of 16.
    const block = new SwinBlockV1({ dim: 24, heads: 2, window: 4, shift: 2, mlpRatio: 2, dropPath: 0 });
    const def = defineModel({
      name: "block",
      configs: { only: {} },
      defaultConfig: "only",
      create: () =>
        instance({
          module: block,
          inputs: { x: spec([1, 8, 8, 24]) },
          forward: ({ x }: Record<string, AnyTensor>) => ({ y: block.forward(x.cast("bf16") as never) }) as never,
        }),
    });
    const unfused = dce(cse(traceModel(def, {}).graph));
    const fused = fuse(unfused).graph;
    expect(unloweredOps(fused)).toEqual(["windowAttention"]);
    expect(unloweredOps(unfused)).toEqual([]);
    const r = lowerStage(fused, unfused, true);
    expect(r.graph).toBe("unfused");
    expect(r.reason).toContain("windowAttention: head dim 12 is not a multiple of 16");
    expect(lowerStage(unfused, unfused, false).graph).toBe("unfused");
    // Lowering the fused graph itself is the located build error.
    let err: unknown;
    try {
      lowerGraph(fused);
    } catch (e) {
      err = e;
    }
    expect(isUserError(err)).toBe(true);
    expect((err as UserError).message).toMatch(/no sm_80 kernel for op 'windowAttention'/);
    expect((err as UserError).where).toMatch(/model\/perceptnet\/window-attention\.ts:\d+:\d+$/);
  });

  it("an op configuration without a kernel names the op and the source line", () => {
    const g = new Graph();
    const loc = { file: "model/user.ts", line: 12, col: 3 };
    const q = g.add("input", [], { name: "q", shape: [1, 4, 8], dtype: "bf16" });
    const y = g.add("crossAttention", [q.id, q.id, q.id], { heads: 2, qScale: 0.5 }, loc);
    g.setOutput("y", y.id);
    expect(() => lowerGraph(g)).toThrowError(/no sm_80 kernel for op 'crossAttention'/);
    try {
      lowerGraph(g);
    } catch (e) {
      expect((e as UserError).line).toBe(
        "model/user.ts:12:3: no sm_80 kernel for op 'crossAttention' (head dim 4 is not a multiple of 16): bf16[1,4,8]",
      );
    }
  });

  it("a ptxas failure names the kernel, quotes ptxas and gives a one-line repro", async () => {
    const g = new Graph();
    const x = g.add("input", [], { name: "x", shape: [3, 5], dtype: "f32" });
    g.setOutput("y", g.add("exp", [x.id]).id);
    const { plan, programs } = lowerGraph(g);
    const broken = plan.modules.map((m) => ({ ...m, ptx: m.ptx.replace("ret;", "ret %nonsense;") }));
    const out = tmp();
    const err = await writeKernels(out, broken, programs, { requirePtxas: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PtxasError);
    const p = err as PtxasError;
    expect(p.kernel).toBe(plan.modules[0].name);
    expect(p.message).toContain(plan.modules[0].name);
    expect(p.repro).toMatch(new RegExp(`^ptxas -arch=sm_80 -v -o \\S+\\.cubin \\S+${plan.modules[0].name}\\.ptx$`));
    expect(existsSync(p.repro.split(" ").pop() as string)).toBe(true);
  });
});
