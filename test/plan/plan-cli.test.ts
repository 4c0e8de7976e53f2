import { describe, expect, it } from "vitest";
import { runPtc } from "../helpers/cli.ts";

describe("ptc plan (CLI) on PerceptNet-Large, the paper's setup", () => {
  it("finds a plan that fits 64 x A100-80GB at global batch 2048 with 4 accumulation steps", () => {
    const r = runPtc([
      "plan",
      "model/perceptnet.ts",
      "--config",
      "large",
      "--gpus",
      "64",
      "--gpu",
      "a100-80gb",
      "--global-batch",
      "2048",
      "--accum",
      "4",
      "--days",
      "21",
      "--json",
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p.fits).toBe(true);
    expect(p.microBatch).toBe(8);
    expect(p.nodes).toBe(8);
    expect(p.memoryPerGpuBytes).toBeLessThanOrEqual(0.9 * 80 * 1024 ** 3);
    expect(p.profile.params).toBeGreaterThan(12.0e9);
    expect(p.profile.params).toBeLessThan(12.2e9);
    // DDP cannot hold 12e9 parameters' weights, gradients and optimizer state (18 B each) in 80 GB
    expect(
      p.strategies.find((s: { strategy: string; checkpointing: boolean }) => s.strategy === "ddp" && !s.checkpointing).fits,
    ).toBe(false);
    // the paper's "64 A100 for 3 weeks" is 64 x 21 x 24 GPU-hours
    expect(p.run.budget.gpuHours).toBe(32256);
    expect(p.stepSeconds).toBeCloseTo(2048 / p.imagesPerSecond, 9);
    for (const k of ["strategy", "memoryPerGpuBytes", "stepSeconds", "imagesPerSecond"]) expect(p).toHaveProperty(k);
    // The chosen strategy is one `ptc train --device cuda` runs, and the plan says what it moves.
    expect(["ddp", "zero1", "zero2", "hsdp"]).toContain(p.strategy);
    expect(p.assumptions.join("\n")).toMatch(/gradients reduced in f32 \(4 B\/param\), parameters all-gathered in bf16/);
    // Gradient memory as the runtime holds it (gradients released at their unit's reduce-scatter).
    expect(p.assumptions.join("\n")).toMatch(/gradient plan's outputs until their unit's reduce-scatter hook/);
    expect(p.assumptions.join("\n")).not.toMatch(/still keeps/);
  });

  it("names the flag of a bad request", () => {
    const r = runPtc(["plan", "model/perceptnet.ts", "--gpus", "64", "--global-batch", "100"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --global-batch: global batch 100 is not a multiple of gpus x accum = 256/);
    const g = runPtc(["plan", "model/perceptnet.ts", "--gpus", "8", "--gpu", "v100"]);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/^error: --gpu: unknown GPU 'v100'/);
  });
});
