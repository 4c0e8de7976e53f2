// The device paths from the command line where there is no GPU (CI): `--backend cuda` and
// `--device cuda` fail with runtime/cuda's one-line message (the one `ptc devices` gives), exit 1.
import { describe, expect, it } from "vitest";
import * as cuda from "../../runtime/cuda/driver.ts";
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
