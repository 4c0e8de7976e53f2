// Node module hook: lets `node` import TypeScript sources directly. Each .ts file is transpiled in
// memory (types stripped, inline source map so stack traces point at the .ts lines). Results are
// cached by content hash under node_modules/.cache/ptc, so TypeScript itself is loaded only when a
// file changed. Type checking is not done here: `tsc --noEmit` and `ptc build` do that.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cacheDir = path.join(root, "node_modules", ".cache", "ptc-ts");
const CACHE_VERSION = "1";
let ts;

async function transpile(fileName, source) {
  ts ??= (await import("typescript")).default;
  return ts.transpileModule(source, {
    fileName,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      inlineSourceMap: true,
      inlineSources: true,
      verbatimModuleSyntax: true,
    },
  }).outputText;
}

export async function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return nextLoad(url, context);
  const fileName = fileURLToPath(url);
  const source = await readFile(fileName, "utf8");
  const key = createHash("sha1").update(CACHE_VERSION).update(fileName).update(source).digest("hex");
  const cached = path.join(cacheDir, `${key}.js`);
  let output;
  try {
    output = readFileSync(cached, "utf8");
  } catch {
    output = await transpile(fileName, source);
    try {
      mkdirSync(cacheDir, { recursive: true });
      const tmp = `${cached}.${process.pid}.tmp`;
      writeFileSync(tmp, output);
      renameSync(tmp, cached);
    } catch {
      // A read-only install still works, just without the cache.
    }
  }
  return { format: "module", source: output, shortCircuit: true };
}
