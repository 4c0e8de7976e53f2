// Every catalogue kernel assembles with ptxas for sm_80 with zero spill bytes and no stack frame.
// ptxas is on every machine here and in CI: where it is missing this FAILS with the reason (it does
// not skip). Also: the ptxas -v parser, the failure report (kernel, message, repro), occupancy.

import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { buildKernels, formatKernelTable, type KernelTable } from "../../compiler/codegen/kernel-table.ts";
import { occupancySm80 } from "../../compiler/codegen/occupancy.ts";
import { findPtxas, PtxasError, parsePtxasReport, runPtxas } from "../../compiler/codegen/ptxas.ts";
import { renderPtx } from "../../compiler/codegen/render.ts";
import { catalogue, softmaxForward } from "../../kernels/index.ts";

const MISSING =
  "ptxas is required for this test (CUDA 12+/13 toolkit on PATH, as on every dev machine and in CI) and was not found";

describe("ptxas -arch=sm_80 over the kernel catalogue", () => {
  const programs = catalogue();
  let table: KernelTable | undefined;
  let dir = "";
  beforeAll(() => {
    if (!findPtxas()) return;
    dir = mkdtempSync(path.join(tmpdir(), "ptc-kernels-"));
    table = buildKernels(dir, programs, { requirePtxas: true });
  });

  it("ptxas is on PATH", () => {
    expect(findPtxas(), MISSING).toBeDefined();
  });

  for (const p of programs) {
    it(`${p.name}: assembles with 0 spill bytes, no stack frame`, () => {
      expect(table, MISSING).toBeDefined();
      const row = table!.kernels.find((r) => r.name === p.name)!;
      expect(row.spillStoreBytes).toBe(0);
      expect(row.spillLoadBytes).toBe(0);
      expect(row.stackFrameBytes).toBe(0);
      expect(row.registers).toBeGreaterThan(0);
      expect(row.registers).toBeLessThanOrEqual(255);
      expect(existsSync(path.join(dir, row.cubin!))).toBe(true);
    });
  }

  it("writes the kernel table as JSON and text", () => {
    expect(table, MISSING).toBeDefined();
    const json = JSON.parse(readFileSync(path.join(dir, "kernels", "kernels.json"), "utf8")) as KernelTable;
    expect(json.kernels.map((k) => k.name)).toEqual(programs.map((p) => p.name));
    const text = readFileSync(path.join(dir, "kernels", "kernels.txt"), "utf8");
    expect(text).toBe(formatKernelTable(table!));
    expect(text).toMatch(/^# assembled by ptxas \d+\.\d+ for sm_80/);
  });
});

describe("ptxas failures", () => {
  it("name the kernel, quote ptxas and give a one-line repro that reproduces it", () => {
    expect(findPtxas(), MISSING).toBeDefined();
    const k = softmaxForward({ dtype: "f32" });
    const broken = renderPtx(k).replace("bar.sync 0;", "bar.sync %undefined_register;");
    const dir = mkdtempSync(path.join(tmpdir(), "ptc-ptxas-fail-"));
    let err: unknown;
    try {
      runPtxas(k.name, broken, { dir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PtxasError);
    const e = err as PtxasError;
    expect(e.kernel).toBe(k.name);
    expect(e.message).toContain(`ptxas rejected kernel ${k.name}`);
    expect(e.message).toMatch(/\.ptx, line \d+; error {3}: Arguments mismatch for instruction 'bar'/);
    expect(e.repro).toBe(`ptxas -arch=sm_80 -v -o ${path.join(dir, `${k.name}.cubin`)} ${path.join(dir, `${k.name}.ptx`)}`);
    expect(readFileSync(path.join(dir, `${k.name}.ptx`), "utf8")).toBe(broken);
  });
});

describe("ptxas -v report and occupancy", () => {
  it("parses registers, shared memory and spills per entry", () => {
    const text = [
      "ptxas info    : 0 bytes gmem",
      "ptxas info    : Compiling entry function 'gemm' for 'sm_80'",
      "ptxas info    : Function properties for gemm",
      "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads",
      "ptxas info    : Used 168 registers, 49152 bytes smem, 400 bytes cmem[0]",
      "ptxas info    : Compiling entry function 'norm' for 'sm_80'",
      "ptxas info    : Function properties for norm",
      "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
      "ptxas info    : Used 30 registers, 380 bytes cmem[0]",
    ].join("\n");
    expect(parsePtxasReport(text)).toEqual([
      {
        kernel: "gemm",
        registers: 168,
        sharedBytes: 49152,
        stackFrameBytes: 8,
        spillStoreBytes: 4,
        spillLoadBytes: 12,
        constantBytes: 400,
      },
      {
        kernel: "norm",
        registers: 30,
        sharedBytes: 0,
        stackFrameBytes: 0,
        spillStoreBytes: 0,
        spillLoadBytes: 0,
        constantBytes: 380,
      },
    ]);
  });

  it("computes A100 occupancy from registers, shared memory and threads", () => {
    // 124 regs -> 4096 per warp (granule 256), 8 warps -> 32768 per CTA: 2 CTAs by registers.
    expect(occupancySm80({ registers: 124, sharedBytes: 49152, threads: 256 })).toEqual({
      ctasPerSM: 2,
      warpsPerSM: 16,
      fraction: 0.25,
      limiter: "registers",
    });
    // 48 KB + 1 KB reserved per CTA: 3 CTAs fit in 164 KB.
    expect(occupancySm80({ registers: 32, sharedBytes: 49152, threads: 128 })).toMatchObject({
      ctasPerSM: 3,
      limiter: "shared memory",
    });
    // 128 threads: 16 CTAs fill 64 warps.
    expect(occupancySm80({ registers: 32, sharedBytes: 0, threads: 128 })).toMatchObject({
      ctasPerSM: 16,
      fraction: 1,
      limiter: "threads",
    });
    // 64 threads: the 32-CTA limit binds at 64 warps x 1/2.
    expect(occupancySm80({ registers: 16, sharedBytes: 0, threads: 64 })).toMatchObject({
      ctasPerSM: 32,
      fraction: 1,
      limiter: "threads",
    });
    expect(occupancySm80({ registers: 16, sharedBytes: 0, threads: 32 })).toMatchObject({
      ctasPerSM: 32,
      fraction: 0.5,
      limiter: "CTAs",
    });
  });
});
