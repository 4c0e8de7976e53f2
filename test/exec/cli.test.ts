// The device paths from the command line. Where there is no GPU (CI): `--backend cuda` and
// `--device cuda` fail with runtime/cuda's one-line message (the one `ptc devices` gives), exit 1.
// `ptc train --device ptx-emu` trains in the emulator and checkpoints like the CPU trainer.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as cuda from "../../runtime/cuda/driver.ts";
import { readSafetensors } from "../../runtime/io/index.ts";
import { runPtc } from "../helpers/cli.ts";

const gpu = cuda.available();

describe.skipIf(gpu)("device flags without a GPU", () => {
  it("ptc run --backend cuda says there is no driver, in one line, exit 1", () => {
    const devices = runPtc(["devices"]);
    expect(devices.code).toBe(0);
    const cause = /no CUDA driver found \(([^)]*)\)/.exec(devices.stdout)?.[1];
    expect(cause, devices.stdout).toBeTruthy();
    const r = runPtc([
      "run",
      "model/perceptnet.ts",
      "--config",
      "xxs",
      "--backend",
      "cuda",
      "-o",
      "/tmp/ptc-never-written.safetensors",
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr.trim().split("\n")).toEqual([
      `error: --backend: backend 'cuda' is not available here: no CUDA driver found (${cause}); --device cuda needs an NVIDIA GPU and driver`,
    ]);
  });

  it("ptc train --device cuda fails the same way before loading anything; an unknown device is named", () => {
    const r = runPtc(["train", "model/perceptnet.ts", "--config", "xxs", "--device", "cuda", "--steps", "1"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(
      /^error: --device: no CUDA driver found \([^)]*\); --device cuda needs an NVIDIA GPU and driver$/,
    );
    const bad = runPtc(["train", "model/perceptnet.ts", "--device", "gpu", "--steps", "1"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe("error: --device: expected one of cuda, ptx-emu, got 'gpu'");
  });
});

const dir = mkdtempSync(path.join(tmpdir(), "ptc-exec-train-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("ptc train --device ptx-emu", () => {
  it("trains PerceptNet xxs in the emulator and checkpoints; its first step matches --backend cpu", () => {
    const train = (where: string[], name: string) => {
      const ckpt = path.join(dir, name);
      const r = runPtc(
        ["train", "model/perceptnet.ts", "--config", "xxs", "--steps", "1", "--micro-batch", "1", "--image-size", "32x32"].concat(
          ["--precision", "bf16", "--no-typecheck", "--ckpt-dir", ckpt, ...where],
        ),
        { timeoutMs: 300_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      const step = JSON.parse(readFileSync(path.join(ckpt, "train.jsonl"), "utf8").split("\n")[0]);
      return { step, stderr: r.stderr, weights: readSafetensors(path.join(ckpt, "step-00000001", "model.safetensors")) };
    };
    const emu = train(["--device", "ptx-emu"], "emu");
    const cpu = train([], "cpu");
    expect(emu.stderr).toMatch(/bf16 on PTX emulator/);
    // Bounds as device-train.test.ts: the bf16 loss within one ulp, the gradient norm within 5%.
    expect(Math.abs(emu.step.loss - cpu.step.loss)).toBeLessThanOrEqual(2 ** -8 * cpu.step.loss);
    expect(Math.abs(emu.step.gradNorm - cpu.step.gradNorm) / cpu.step.gradNorm).toBeLessThan(0.05);
    expect(emu.step.applied).toBe(true);
    expect([...emu.weights.keys()].sort()).toEqual([...cpu.weights.keys()].sort());
  });
});
