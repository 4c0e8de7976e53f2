// Runs NVIDIA's assembler on a test kernel: every hand-written kernel the emulator is tested with must also be
// valid sm_80 PTX, so that the emulator is never tested on PTX the real toolchain would reject.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export function ptxasVersion(): string | undefined {
  const r = spawnSync("ptxas", ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.trim().split("\n").pop();
}

/** Assemble each kernel with `ptxas -arch=sm_80`; returns one message per kernel it rejects. */
export function ptxasRejections(kernels: Record<string, string>): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), "ptc-emu-ptxas-"));
  const failures: string[] = [];
  try {
    for (const [name, text] of Object.entries(kernels)) {
      const file = path.join(dir, `${name}.ptx`);
      writeFileSync(file, text);
      const r = spawnSync("ptxas", ["-arch=sm_80", "-o", "/dev/null", file], { encoding: "utf8" });
      if (r.status !== 0) failures.push(`${name}: ${(r.stderr || r.stdout).trim()}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return failures;
}
