// Node module hook: lets `node` import TypeScript sources directly. Each .ts file is transpiled in
// memory (types stripped, inline source map so stack traces point at the .ts lines); nothing is
// written to disk. Type checking is not done here: `tsc --noEmit` and `ptc build` do that.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const options = {
  module: ts.ModuleKind.ESNext,
  target: ts.ScriptTarget.ES2022,
  inlineSourceMap: true,
  inlineSources: true,
  verbatimModuleSyntax: true,
};

export async function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !url.endsWith(".ts")) return nextLoad(url, context);
  const fileName = fileURLToPath(url);
  const source = await readFile(fileName, "utf8");
  const { outputText } = ts.transpileModule(source, { fileName, compilerOptions: options });
  return { format: "module", source: outputText, shortCircuit: true };
}
