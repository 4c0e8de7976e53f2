import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SMEM_REVERSE_PTX, VEC_ADD_PTX } from "../gpu/cuda-ptx.ts";

function hasPtxas(): boolean {
  try {
    execFileSync("ptxas", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

// The GPU tests' hand-written PTX must assemble before a scarce GPU run meets it.
describe.skipIf(!hasPtxas())("PTX of the GPU tests", () => {
  it.each([
    ["vec_add", VEC_ADD_PTX],
    ["smem_reverse", SMEM_REVERSE_PTX],
  ])("ptxas accepts %s for sm_80 without spills", (name, ptx) => {
    const dir = mkdtempSync(join(tmpdir(), "ptc-ptx-"));
    try {
      const file = join(dir, `${name}.ptx`);
      writeFileSync(file, ptx);
      const r = spawnSync("ptxas", ["-arch=sm_80", "-v", file, "-o", join(dir, `${name}.cubin`)], { encoding: "utf8" });
      const log = `${r.stdout}${r.stderr}`;
      expect(r.status, log).toBe(0);
      expect(log).toMatch(/Used \d+ registers/);
      expect(log).not.toMatch(/spill (stores|loads) [1-9]/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
