// Every kernel the lowering emits for the xxs model (pre-training and segmentation, forward and
// training step, in bf16 and f32: `ptc build` and `ptc train --precision` emit both; the fused bf16
// forwards with the window-attention, cross-attention and FPN-merge kernels; the device trainer's
// packed plans: multi-tensor casts and the packed AdamW) assembles with
// `ptxas -arch=sm_80` with zero spill bytes and no stack frame. ptxas is on every machine here and in
// CI: where it is missing this FAILS with the reason (it does not skip). No assembly cache: every
// kernel goes through ptxas, joined into two modules assembled in parallel (ptxas compiles each entry
// on its own; one process for many small kernels is ~3x faster). `ptc build` assembles per kernel
// (test/lower/build.test.ts).

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ADAMW_DEFAULTS, adamwParams, gradName } from "../../compiler/autodiff/index.ts";
import { findPtxas } from "../../compiler/codegen/ptxas.ts";
import { assembleCombined } from "../../compiler/frontend/kernels-stage.ts";
import { lowerGraph, lowerTrainingStep, type PlanModule } from "../../compiler/lower/index.ts";
import { fuse } from "../../compiler/passes/index.ts";
import { xxsGraph } from "./xxs.ts";

const MISSING =
  "ptxas is required for this test (CUDA 12+/13 toolkit on PATH, as on every dev machine and in CI) and was not found";

describe("ptxas -arch=sm_80 over every xxs kernel", () => {
  const modules = new Map<string, PlanModule>();
  let reports: Awaited<ReturnType<typeof assembleCombined>> | undefined;
  beforeAll(async () => {
    const graphs = [
      ...(["pretrain", "seg"] as const).flatMap((task) =>
        (["forward", "training step"] as const).map((step) => xxsGraph(task, step, "bf16")),
      ),
      ...(["pretrain", "seg"] as const).flatMap((task) =>
        (["forward", "training step"] as const).map((step) => xxsGraph(task, step, "f32")),
      ),
      // The fused bf16 forwards run the window-attention, cross-attention and FPN-merge kernels.
      fuse(xxsGraph("pretrain", "forward", "bf16")).graph,
      fuse(xxsGraph("seg", "forward", "bf16")).graph,
    ];
    for (const g of graphs) for (const m of lowerGraph(g).plan.modules) modules.set(m.name, m);
    // The device trainer's packed plans: the multi-tensor casts, the flat accumulation, packed AdamW.
    const train = xxsGraph("pretrain", "training step", "bf16");
    const step = lowerTrainingStep(train, adamwParams(train), {
      gradName,
      accum: 2,
      adamw: { ...ADAMW_DEFAULTS, maxGradNorm: 1 },
    });
    for (const p of [step.grad.plan, step.accumulate?.plan, step.adamw.plan])
      for (const m of p?.modules ?? []) modules.set(m.name, m);
    if (!findPtxas()) return;
    reports = await assembleCombined([...modules.values()], mkdtempSync(path.join(tmpdir(), "ptc-xxs-kernels-")), 2);
  }, 600_000);

  it("ptxas is on PATH", () => {
    expect(findPtxas(), MISSING).toBeDefined();
  });

  it("assembles every kernel: no spill bytes, no stack frame, at most 255 registers", () => {
    expect(reports, MISSING).toBeDefined();
    const byName = new Map((reports ?? []).map((r) => [r.kernel, r]));
    expect(modules.size).toBeGreaterThan(700);
    for (const fusedKernel of ["window_attention_fwd", "cross_attention_fwd", "fpn_merge_normalize", "packed_cast", "adamw_"])
      expect(
        [...modules.keys()].some((k) => k.startsWith(fusedKernel)),
        fusedKernel,
      ).toBe(true);
    for (const name of modules.keys()) {
      const r = byName.get(name);
      expect(r, `ptxas report of ${name}`).toBeDefined();
      if (!r) continue;
      expect(r.spillStoreBytes, name).toBe(0);
      expect(r.spillLoadBytes, name).toBe(0);
      expect(r.stackFrameBytes, name).toBe(0);
      expect(r.registers, name).toBeGreaterThan(0);
      expect(r.registers, name).toBeLessThanOrEqual(255);
    }
  });
});
