// Building PTX text for hand-written test kernels, and running them.

import { GlobalMemory, type LaunchConfig, type LaunchStats, launch, parsePtx } from "../../runtime/ptx-emu/index.ts";

export const PTX_HEADER = ".version 7.8\n.target sm_80\n.address_size 64\n";

/** A module with one `.visible .entry` kernel. */
export function ptxEntry(name: string, params: string, body: string, directives = ""): string {
  return `${PTX_HEADER}\n.visible .entry ${name}(${params})${directives ? `\n${directives}` : ""}\n{\n${body}\n}\n`;
}

/** Parse `ptx` and launch `kernel` once; returns the memory (for reading results) and the stats. */
export function runKernel(
  ptx: string,
  kernel: string,
  config: LaunchConfig,
  mem = new GlobalMemory(),
): { mem: GlobalMemory; stats: LaunchStats } {
  const stats = launch(parsePtx(ptx), kernel, config, mem);
  return { mem, stats };
}

/** The PTX line number (1-based) of the first line containing `needle` (after the first containing `after`). */
export function lineOf(ptx: string, needle: string, after?: string): number {
  const lines = ptx.split("\n");
  const from = after === undefined ? 0 : lines.findIndex((l) => l.includes(after));
  const i = lines.findIndex((l, k) => k >= from && l.includes(needle));
  if (i < 0) throw new Error(`'${needle}' is not in the kernel`);
  return i + 1;
}
