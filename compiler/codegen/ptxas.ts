// Runs NVIDIA's ptxas on emitted PTX (when it is on PATH) and reads its -v report: registers,
// shared memory, stack frame, spill stores/loads. A failure names the kernel, quotes ptxas and gives
// a one-line command that reproduces it (the PTX is kept on disk for that).

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { UserError } from "../ir/errors.ts";

export interface PtxasReport {
  kernel: string;
  registers: number;
  /** Static shared memory (bytes). */
  sharedBytes: number;
  stackFrameBytes: number;
  spillStoreBytes: number;
  spillLoadBytes: number;
  constantBytes: number;
  /** The cubin, when written. */
  cubinPath?: string;
}

export class PtxasError extends UserError {
  constructor(
    readonly kernel: string,
    readonly ptxasMessage: string,
    readonly repro: string,
  ) {
    super(
      `ptxas rejected kernel ${kernel}: ${ptxasMessage.split("\n").find((l) => /error/i.test(l)) ?? ptxasMessage.trim()}\n  repro: ${repro}`,
    );
    this.name = "PtxasError";
  }
}

export class PtxasMissingError extends UserError {
  constructor() {
    super(
      "ptxas not found on PATH: install the CUDA toolkit (12.x or 13.x) or add its bin/ to PATH; the PTX was written but not assembled",
    );
    this.name = "PtxasMissingError";
  }
}

let cached: string | null | undefined;

/** Path of ptxas: PATH, then $CUDA_HOME/bin, /usr/local/cuda/bin. Undefined when absent. */
export function findPtxas(): string | undefined {
  if (cached !== undefined) return cached ?? undefined;
  const candidates: string[] = [];
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) if (dir) candidates.push(path.join(dir, "ptxas"));
  for (const root of [process.env.CUDA_HOME, process.env.CUDA_PATH, "/usr/local/cuda"])
    if (root) candidates.push(path.join(root, "bin", "ptxas"));
  cached = candidates.find((c) => existsSync(c)) ?? null;
  return cached ?? undefined;
}

export function ptxasVersion(): string | undefined {
  const p = findPtxas();
  if (!p) return undefined;
  const out = execFileSync(p, ["--version"], { encoding: "utf8" });
  return /release ([\d.]+)/.exec(out)?.[1];
}

/** Parses `ptxas -v` output into one report per entry function. */
export function parsePtxasReport(text: string): PtxasReport[] {
  const reports: PtxasReport[] = [];
  let cur: PtxasReport | undefined;
  for (const line of text.split("\n")) {
    const fn = /(?:Compiling entry function|Function properties for) '?([A-Za-z_$][\w$]*)'?/.exec(line);
    if (fn) {
      if (!cur || cur.kernel !== fn[1]) {
        cur = reports.find((r) => r.kernel === fn[1]);
        if (!cur) {
          cur = {
            kernel: fn[1],
            registers: 0,
            sharedBytes: 0,
            stackFrameBytes: 0,
            spillStoreBytes: 0,
            spillLoadBytes: 0,
            constantBytes: 0,
          };
          reports.push(cur);
        }
      }
      continue;
    }
    if (!cur) continue;
    const frame = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (frame) {
      cur.stackFrameBytes = Number(frame[1]);
      cur.spillStoreBytes = Number(frame[2]);
      cur.spillLoadBytes = Number(frame[3]);
    }
    const used = /Used (\d+) registers/.exec(line);
    if (used) {
      cur.registers = Number(used[1]);
      cur.sharedBytes = Number(/(\d+) bytes smem/.exec(line)?.[1] ?? 0);
      cur.constantBytes = Number(/(\d+) bytes cmem\[0\]/.exec(line)?.[1] ?? 0);
    }
  }
  return reports;
}

/**
 * Assembles `ptx` for sm_80. Writes `<dir>/<kernel>.ptx` (and the cubin next to it) so the repro
 * command works after the process ends; dir defaults to a fresh temp folder.
 */
export function runPtxas(kernel: string, ptx: string, o: { dir?: string; arch?: string; keepCubin?: boolean } = {}): PtxasReport {
  const ptxas = findPtxas();
  if (!ptxas) throw new PtxasMissingError();
  const arch = o.arch ?? "sm_80";
  const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), "ptc-ptxas-"));
  mkdirSync(dir, { recursive: true });
  const ptxPath = path.join(dir, `${kernel}.ptx`);
  const cubinPath = path.join(dir, `${kernel}.cubin`);
  if (!existsSync(ptxPath) || readFileSync(ptxPath, "utf8") !== ptx) writeFileSync(ptxPath, ptx);
  const args = [`-arch=${arch}`, "-v", "-o", cubinPath, ptxPath];
  const r = spawnSync(ptxas, args, { encoding: "utf8" });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (r.status !== 0) throw new PtxasError(kernel, out || String(r.error ?? `exit ${r.status}`), `ptxas ${args.join(" ")}`);
  const report = parsePtxasReport(out).find((x) => x.kernel === kernel);
  if (!report) throw new Error(`ptxas -v printed no report for ${kernel}:\n${out}`);
  return { ...report, cubinPath };
}
