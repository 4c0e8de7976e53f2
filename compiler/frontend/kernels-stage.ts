// The `codegen` stage of ptc build: the plan's kernels to `<out>/kernels/<name>.ptx`, `<name>.cubin`
// (when ptxas is on PATH) and the kernel table (`kernels.json` / `kernels.txt`: registers, shared
// memory, spills, occupancy), plus `plan.json`. ptxas runs as parallel processes (one per core): a
// model's few hundred small kernels would otherwise take a minute one after another. A ptxas failure
// is compiler/codegen's PtxasError: the kernel, ptxas's message and a one-line repro.
// Assembled kernels are cached by the hash of (ptxas version, PTX text) in ~/.cache/ptc/ptxas
// ($PTC_PTXAS_CACHE overrides the folder, "off" disables it): rebuilding a model reassembles only
// the kernels that changed.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, homedir } from "node:os";
import path from "node:path";
import { formatKernelTable, type KernelTable, type KernelTableRow } from "../codegen/kernel-table.ts";
import { occupancySm80 } from "../codegen/occupancy.ts";
import { findPtxas, PtxasError, PtxasMissingError, parsePtxasReport, ptxasVersion } from "../codegen/ptxas.ts";
import type { PlanModule } from "../lower/plan.ts";
import type { KernelProgram } from "../tile/index.ts";

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export interface KernelsStageResult {
  table: KernelTable;
  /** Kernels assembled by ptxas (0 without ptxas). */
  assembled: number;
  /** Kernels with spill stores/loads or a stack frame, by name. */
  spilling: string[];
  files: string[];
}

/** Runs `jobs` with at most `limit` in flight, in order of completion; rejects on the first failure. */
async function pool<T>(jobs: readonly (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results = new Array<T>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

type Report = ReturnType<typeof parsePtxasReport>[number];

function cacheDir(): string | undefined {
  const env = process.env.PTC_PTXAS_CACHE;
  if (env === "off") return undefined;
  return env ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), ".cache"), "ptc", "ptxas");
}

/** Assembles through the cache: a hit copies the cubin and returns the stored report. */
async function assembleCached(
  ptxas: string,
  version: string,
  kernel: string,
  ptx: string,
  ptxPath: string,
  cubinPath: string,
): Promise<Report> {
  const dir = cacheDir();
  const key = createHash("sha1").update(`${version}\n${ptx}`).digest("hex");
  const [cubin, report] = dir ? [path.join(dir, `${key}.cubin`), path.join(dir, `${key}.json`)] : ["", ""];
  if (dir && existsSync(cubin) && existsSync(report)) {
    try {
      const r = JSON.parse(readFileSync(report, "utf8")) as Report;
      copyFileSync(cubin, cubinPath);
      return { ...r, kernel };
    } catch {
      // a damaged entry: assemble again
    }
  }
  const r = await assemble(ptxas, kernel, ptxPath, cubinPath);
  if (dir) {
    try {
      mkdirSync(dir, { recursive: true });
      const tmp = `${cubin}.tmp-${process.pid}`;
      copyFileSync(cubinPath, tmp);
      renameSync(tmp, cubin);
      writeAtomic(report, JSON.stringify(r));
    } catch {
      // the cache is an optimisation: an unwritable folder only costs time
    }
  }
  return r;
}

function assemble(ptxas: string, kernel: string, ptxPath: string, cubinPath: string) {
  const args = ["-arch=sm_80", "-v", "-o", cubinPath, ptxPath];
  return new Promise<Report>((resolve, reject) => {
    const child = spawn(ptxas, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    child.on("error", (e) => reject(new PtxasError(kernel, String(e), `ptxas ${args.join(" ")}`)));
    child.on("close", (code) => {
      if (code !== 0) return reject(new PtxasError(kernel, out || `exit ${code}`, `ptxas ${args.join(" ")}`));
      const r = parsePtxasReport(out).find((x) => x.kernel === kernel);
      if (!r) return reject(new Error(`ptxas -v printed no report for ${kernel}:\n${out}`));
      resolve(r);
    });
  });
}

/**
 * Writes every module's PTX, assembles it when ptxas is available (required when `requirePtxas`),
 * and writes the kernel table. `programs` are the modules' programs, in order (docs, sources).
 */
export async function writeKernels(
  outDir: string,
  modules: readonly PlanModule[],
  programs: readonly KernelProgram[],
  o: { requirePtxas?: boolean; concurrency?: number } = {},
): Promise<KernelsStageResult> {
  const dir = path.join(outDir, "kernels");
  mkdirSync(dir, { recursive: true });
  const ptxas = findPtxas();
  if (!ptxas && o.requirePtxas) throw new PtxasMissingError();
  const files: string[] = [];
  const rows: KernelTableRow[] = modules.map((m, i) => {
    const p = programs[i];
    const file = path.join(dir, `${m.name}.ptx`);
    writeAtomic(file, m.ptx);
    files.push(file);
    return {
      name: m.name,
      doc: p?.doc,
      source: p?.loc ? `${p.loc.file}:${p.loc.line}` : undefined,
      threads: (p?.warps ?? 0) * 32,
      sharedBytes: p?.sharedBytes ?? 0,
      ptx: path.relative(outDir, file),
    };
  });
  let assembled = 0;
  if (ptxas) {
    const limit = o.concurrency ?? Math.max(1, availableParallelism());
    const version = ptxasVersion() ?? "?";
    const reports = await pool(
      rows.map(
        (r, i) => () =>
          assembleCached(
            ptxas,
            version,
            r.name,
            modules[i].ptx,
            path.join(dir, `${r.name}.ptx`),
            path.join(dir, `${r.name}.cubin`),
          ),
      ),
      limit,
    );
    reports.forEach((rep, i) => {
      const r = rows[i];
      const cubin = path.join(dir, `${r.name}.cubin`);
      files.push(cubin);
      Object.assign(r, {
        registers: rep.registers,
        spillStoreBytes: rep.spillStoreBytes,
        spillLoadBytes: rep.spillLoadBytes,
        stackFrameBytes: rep.stackFrameBytes,
        cubin: path.relative(outDir, cubin),
        occupancy: occupancySm80({ registers: rep.registers, sharedBytes: rep.sharedBytes, threads: r.threads }),
      });
    });
    assembled = reports.length;
  }
  const table: KernelTable = { arch: "sm_80", ptxas: ptxas ? `ptxas ${ptxasVersion() ?? "?"}` : null, kernels: rows };
  writeAtomic(path.join(dir, "kernels.json"), `${JSON.stringify(table, null, 2)}\n`);
  writeAtomic(path.join(dir, "kernels.txt"), formatKernelTable(table));
  files.push(path.join(dir, "kernels.json"), path.join(dir, "kernels.txt"));
  const spilling = rows
    .filter((r) => (r.spillStoreBytes ?? 0) + (r.spillLoadBytes ?? 0) + (r.stackFrameBytes ?? 0) > 0)
    .map((r) => r.name);
  return { table, assembled, spilling, files };
}

/**
 * Joins kernels into one PTX module (one header, `.file` directives merged and `.loc` renumbered):
 * ptxas assembles each entry on its own, but one process for many small kernels is ~3x faster than
 * one process each.
 */
export function combinePtx(modules: readonly PlanModule[]): string {
  const files = new Map<string, number>();
  const bodies: string[] = [];
  for (const m of modules) {
    const local = new Map<string, number>();
    const out: string[] = [];
    for (const line of m.ptx.split("\n")) {
      const f = /^\.file\s+(\d+)\s+"([^"]*)"/.exec(line);
      if (f) {
        if (!files.has(f[2])) files.set(f[2], files.size + 1);
        local.set(f[1], files.get(f[2]) as number);
        continue;
      }
      if (/^\.(version|target|address_size)\b/.test(line)) continue;
      out.push(line.replace(/^(\s*\.loc\s+)(\d+)/, (_, head: string, id: string) => `${head}${local.get(id) ?? id}`));
    }
    bodies.push(out.join("\n"));
  }
  const header = [".version 7.8", ".target sm_80", ".address_size 64", ...[...files].map(([name, i]) => `.file ${i} "${name}"`)];
  return `${header.join("\n")}\n${bodies.join("\n")}`;
}

/** ptxas -v reports of every kernel, assembling `chunks` combined modules in parallel (no cubins kept). */
export async function assembleCombined(modules: readonly PlanModule[], dir: string, chunks = 2): Promise<Report[]> {
  const ptxas = findPtxas();
  if (!ptxas) throw new PtxasMissingError();
  mkdirSync(dir, { recursive: true });
  const size = Math.ceil(modules.length / chunks);
  const parts = Array.from({ length: chunks }, (_, c) => modules.slice(c * size, (c + 1) * size)).filter((p) => p.length > 0);
  const runs = parts.map((part, c) => () => {
    const ptxPath = path.join(dir, `combined_${c}.ptx`);
    writeAtomic(ptxPath, combinePtx(part));
    const args = ["-arch=sm_80", "-v", "-o", path.join(dir, `combined_${c}.cubin`), ptxPath];
    return new Promise<Report[]>((resolve, reject) => {
      const child = spawn(ptxas, args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      child.stderr.on("data", (d) => {
        out += d;
      });
      child.on("error", reject);
      child.on("close", (code) => {
        if (code !== 0)
          return reject(new PtxasError(part.map((m) => m.name).join(", "), out || `exit ${code}`, `ptxas ${args.join(" ")}`));
        resolve(parsePtxasReport(out));
      });
    });
  });
  return (await pool(runs, chunks)).flat();
}
