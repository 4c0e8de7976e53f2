// `ptc run` fuses by default (window attention, FPN merges, cross-attention), so `--config xxs
// --backend ptx-emu` (f32, the default precision) runs the fused ops' f32 kernels
// (kernels/window-attention-simt.ts, cross-attention-simt.ts, fpnMergeNormalize) and must still
// match `--backend cpu` (which runs the fused ops' CPU references): every output within 1e-4 of its
// max |reference|, mean 5e-5 (the bound of test/exec/run-backends.test.ts for the unfused plan:
// kernels sum in other orders than the CPU). run() is the CLI's function; the plan asserted on is
// the one the ptx-emu backend executed (runtime/exec/lowering.ts caches it per graph).
// Also: the --precision flag of `ptc run` and `ptc build` (one parser, compiler/frontend/flags.ts).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { compareOutputs, formatAgreement } from "../../runtime/exec/agreement.ts";
import { lowerGraph } from "../../runtime/exec/lowering.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { run } from "../../runtime/run/run.ts";
import { runPtc } from "../helpers/cli.ts";

const dir = mkdtempSync(path.join(tmpdir(), "ptc-run-fused-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("ptc run with fusion on", () => {
  it("xxs on ptx-emu runs the fused f32 kernels and agrees with --backend cpu", async () => {
    const options = { config: "xxs", seed: 3, typecheck: false };
    const cpu = await run("model/perceptnet.ts", { ...options, backend: "cpu" });
    const emu = await run("model/perceptnet.ts", { ...options, backend: "ptx-emu" });
    const ops = emu.graph.nodes.map((n) => n.op);
    expect(ops.filter((op) => op === "windowAttention")).toHaveLength(8);
    expect(ops.filter((op) => op === "crossAttention")).toHaveLength(3);
    expect(ops.filter((op) => op === "fpnMerge")).toHaveLength(3);
    const plan = lowerGraph(emu.graph, { packParams: true });
    const kernels = plan.launches.map((l) => l.kernel);
    const count = (prefix: string) => kernels.filter((k) => k.startsWith(prefix)).length;
    expect(count("window_attention_simt_fwd")).toBe(8);
    expect(count("cross_attention_simt_fwd")).toBe(3);
    expect(kernels.filter((k) => /^fpn_merge_normalize_.*_f32/.test(k))).toHaveLength(3);
    expect(plan.launches.filter((l) => l.label.startsWith("windowAttention "))).toHaveLength(8);

    const agree = compareOutputs(emu.outputs, cpu.outputs, { rel: 1e-4, floor: 1e-7, meanRel: 5e-5 });
    expect(agree.failures, formatAgreement(agree)).toEqual([]);
    expect([...emu.outputs.keys()].sort()).toEqual(["loss", "reconstruction"]);
    expect(cpu.outputs.get("reconstruction")?.data.some((v) => Math.abs(v) > 0.1)).toBe(true);
  });
});

describe("--precision", () => {
  it("ptc run --precision bf16 computes in bf16; a bad value is a one-line error", () => {
    const loss = (precision: string) => {
      const out = path.join(dir, `${precision}.safetensors`);
      const r = runPtc(["run", "model/perceptnet.ts", "--config", "xxs", "--precision", precision, "--no-typecheck", "-o", out]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      return readSafetensors(out).get("loss")?.data[0] as number;
    };
    // The same model and weights in bf16 compute: the loss moves by bf16 rounding (~2^-8), not more.
    const f32 = loss("f32");
    const bf16 = loss("bf16");
    expect(bf16).not.toBe(f32);
    expect(Math.abs(bf16 - f32)).toBeLessThan(0.02 * f32);
    const out = path.join(dir, "bad.safetensors");
    const bad = runPtc(["run", "model/perceptnet.ts", "--precision", "f16", "-o", out]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe("error: --precision: expected f32 or bf16, got 'f16'");
  });

  it("ptc build --precision bf16 traces the bf16 model", () => {
    const json = (precision: string) => {
      const r = runPtc([
        "build",
        "model/perceptnet.ts",
        "--config",
        "xxs",
        "--precision",
        precision,
        "--no-kernels",
        "--no-typecheck",
        "--json",
        "--out",
        dir,
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout);
    };
    const f32 = json("f32");
    const bf16 = json("bf16");
    expect(bf16.params).toBe(f32.params); // f32 masters either way
    expect(bf16.ops.cast ?? 0).toBeGreaterThan(f32.ops.cast ?? 0);
    expect(bf16.fusions).toEqual(f32.fusions);
  });
});
