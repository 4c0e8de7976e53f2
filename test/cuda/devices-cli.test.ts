import { describe, expect, it } from "vitest";
import { available } from "../../runtime/cuda/index.ts";
import { runPtc } from "../helpers/cli.ts";

describe("ptc devices (CLI)", () => {
  it.skipIf(available())("says plainly that no driver was found and the CPU backend is used", () => {
    const r = runPtc(["devices"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("no CUDA driver found (libcuda.so.1 not found); ptc will use the CPU backend");
    const j = JSON.parse(runPtc(["devices", "--json"]).stdout);
    expect(j).toMatchObject({ available: false, devices: [] });
  });
  it.skipIf(!available())("lists the GPUs with their compute capability", () => {
    const r = runPtc(["devices"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/CUDA driver .*device\(s\):\n\s+0: .* sm_\d+/);
  });
});
