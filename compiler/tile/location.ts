// Source locations of kernel statements: the first stack frame outside the kernel language itself,
// i.e. the line of the kernel author's TypeScript that issued the op. The renderer turns these into
// PTX `.loc` directives, so ptxas messages and profilers point back at the kernel's source.

import path from "node:path";
import { fileURLToPath } from "node:url";
import type { SourceLoc } from "../ir/types.ts";

const tileDir = path.dirname(fileURLToPath(import.meta.url)) + path.sep;
// Paths are relative to the repository when inside it, so emitted PTX does not depend on the cwd.
const repoRoot = path.resolve(tileDir, "..", "..") + path.sep;
const frameRe = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?$/;

export function kernelSourceLocation(): SourceLoc | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 32;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n").slice(1)) {
    const m = frameRe.exec(line.trim());
    if (!m) continue;
    let file = m[1].startsWith("file://") ? fileURLToPath(m[1]) : m[1];
    const q = file.indexOf("?");
    if (q >= 0) file = file.slice(0, q);
    if (!path.isAbsolute(file) || file.startsWith(tileDir) || file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    const rel = file.startsWith(repoRoot) ? file.slice(repoRoot.length).split(path.sep).join("/") : file;
    return { file: rel, line: Number(m[2]), col: Number(m[3]) };
  }
  return undefined;
}
