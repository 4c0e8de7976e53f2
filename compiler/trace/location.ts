// Finds the user's line for a traced op: the first stack frame outside the compiler's own sources
// (the DSL, nn modules and tracer), so an error in `this.proj.forward(x)` points at the model file.

import path from "node:path";
import { fileURLToPath } from "node:url";
import type { SourceLoc } from "../ir/index.ts";

const compilerDir = path.dirname(path.dirname(fileURLToPath(import.meta.url))) + path.sep;
const frameRe = /\(?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?$/;

function frameFile(raw: string): string {
  let f = raw.startsWith("file://") ? fileURLToPath(raw) : raw;
  const q = f.indexOf("?"); // bundlers append ?v=...; strip it
  if (q >= 0) f = f.slice(0, q);
  return f;
}

export function callerLocation(): SourceLoc | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 64;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n").slice(1)) {
    const m = frameRe.exec(line.trim());
    if (!m) continue;
    const file = frameFile(m[1]);
    if (!path.isAbsolute(file) || file.startsWith(compilerDir) || file.includes(`${path.sep}node_modules${path.sep}`)) continue;
    return { file: path.relative(process.cwd(), file) || file, line: Number(m[2]), col: Number(m[3]) };
  }
  return undefined;
}
