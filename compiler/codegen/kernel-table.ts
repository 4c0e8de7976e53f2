// Building a set of kernels into a folder: `<out>/kernels/<name>.ptx`, `<name>.cubin` (when ptxas is
// on PATH) and the kernel table `<out>/kernels/kernels.json` + `kernels.txt` (registers, shared
// memory, spills, occupancy). `ptc build` calls buildKernels once the graph is lowered.

import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { UserError } from "../ir/errors.ts";
import type { KernelProgram } from "../tile/ir.ts";
import { type Occupancy, occupancySm80 } from "./occupancy.ts";
import { findPtxas, PtxasMissingError, ptxasVersion, runPtxas } from "./ptxas.ts";
import { renderPtx } from "./render.ts";

export interface KernelTableRow {
  name: string;
  doc?: string;
  source?: string;
  threads: number;
  /** Static shared memory the program declares. */
  sharedBytes: number;
  ptx: string;
  /** From ptxas -v (absent without ptxas). */
  registers?: number;
  spillStoreBytes?: number;
  spillLoadBytes?: number;
  stackFrameBytes?: number;
  cubin?: string;
  occupancy?: Occupancy;
}

export interface KernelTable {
  arch: "sm_80";
  ptxas: string | null;
  kernels: KernelTableRow[];
}

export interface BuildKernelsOptions {
  /** Fail when ptxas is missing (default: write PTX only and say so in the table). */
  requirePtxas?: boolean;
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * Renders every program to `<outDir>/kernels/<name>.ptx`, assembles it with ptxas when available and
 * writes the kernel table. A ptxas failure throws PtxasError (kernel name, message, repro command).
 */
export function buildKernels(outDir: string, programs: readonly KernelProgram[], o: BuildKernelsOptions = {}): KernelTable {
  const dir = path.join(outDir, "kernels");
  mkdirSync(dir, { recursive: true });
  const seen = new Set<string>();
  for (const p of programs) {
    if (seen.has(p.name)) throw new UserError(`two kernels are named ${p.name}`);
    seen.add(p.name);
  }
  const ptxas = findPtxas();
  if (!ptxas && o.requirePtxas) throw new PtxasMissingError();
  const rows: KernelTableRow[] = programs.map((p) => {
    const ptx = renderPtx(p);
    const file = path.join(dir, `${p.name}.ptx`);
    writeAtomic(file, ptx);
    const row: KernelTableRow = {
      name: p.name,
      doc: p.doc,
      source: p.loc ? `${p.loc.file}:${p.loc.line}` : undefined,
      threads: p.warps * 32,
      sharedBytes: p.sharedBytes,
      ptx: path.relative(outDir, file),
    };
    if (!ptxas) return row;
    const r = runPtxas(p.name, ptx, { dir });
    return {
      ...row,
      registers: r.registers,
      spillStoreBytes: r.spillStoreBytes,
      spillLoadBytes: r.spillLoadBytes,
      stackFrameBytes: r.stackFrameBytes,
      cubin: r.cubinPath ? path.relative(outDir, r.cubinPath) : undefined,
      occupancy: occupancySm80({ registers: r.registers, sharedBytes: r.sharedBytes, threads: p.warps * 32 }),
    };
  });
  const table: KernelTable = { arch: "sm_80", ptxas: ptxas ? `ptxas ${ptxasVersion() ?? "?"}` : null, kernels: rows };
  writeAtomic(path.join(dir, "kernels.json"), `${JSON.stringify(table, null, 2)}\n`);
  writeAtomic(path.join(dir, "kernels.txt"), formatKernelTable(table));
  return table;
}

/** The table as aligned text, one kernel per line. */
export function formatKernelTable(t: KernelTable): string {
  const head = ["kernel", "threads", "regs", "smem B", "spill st/ld B", "occupancy", "limiter"];
  const lines = t.kernels.map((r) => [
    r.name,
    String(r.threads),
    r.registers === undefined ? "-" : String(r.registers),
    String(r.sharedBytes),
    r.spillStoreBytes === undefined ? "-" : `${r.spillStoreBytes}/${r.spillLoadBytes}`,
    r.occupancy ? `${Math.round(r.occupancy.fraction * 100)}% (${r.occupancy.ctasPerSM} CTA)` : "-",
    r.occupancy?.limiter ?? "-",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  const note = t.ptxas ? `assembled by ${t.ptxas} for ${t.arch}` : "ptxas not found on PATH: PTX only, no register/spill numbers";
  return `${[`# ${note}`, fmt(head), ...lines.map(fmt)].join("\n")}\n`;
}
