// Type-checks a model file with the TypeScript compiler API. Shape mistakes the DSL's types can
// prove (rank, matmul inner dims, broadcasting, dtype mixes) surface here as file:line:col errors.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type ts from "typescript";
import { UserError } from "../ir/index.ts";

const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const compilerDir = path.join(projectRoot, "compiler") + path.sep;

/** TypeScript is loaded on first use: it is large, and commands that do not type-check skip it. */
let tsModule: typeof ts | undefined;
async function typescript(): Promise<typeof ts> {
  tsModule ??= (await import("typescript")).default;
  return tsModule;
}

const compilerOptions = (ts: typeof import("typescript"), nodeTypes: boolean): ts.CompilerOptions => ({
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ["lib.es2023.d.ts"],
  // Node's own typings double the check time; only models that import node: modules get them.
  types: nodeTypes ? ["node"] : [],
  typeRoots: [path.join(projectRoot, "node_modules", "@types")],
  strict: true,
  noEmit: true,
  allowImportingTsExtensions: true,
  verbatimModuleSyntax: true,
  isolatedModules: true,
  skipLibCheck: true,
});

export interface ModelDiagnostic {
  file: string;
  line: number;
  col: number;
  message: string;
}

/** One readable line: a ShapeMismatch<"..."> in the message becomes "shape error: ...". */
function readable(ts: typeof import("typescript"), messageText: string | ts.DiagnosticMessageChain): string {
  const full = ts.flattenDiagnosticMessageText(messageText, "\n");
  const shape = /"shape error":\s*"([^"]+)"|ShapeMismatch<"([^"]+)">/.exec(full);
  const first = full.split("\n")[0].trim();
  if (shape) return `shape error: ${shape[1] ?? shape[2]} (${first})`;
  const dtype = /Types of property 'dtype' are incompatible[\s\S]*?Type '"(\w+)"' is not assignable to type '"(\w+)"'/.exec(full);
  if (dtype) return `dtype error: ${dtype[1]} where ${dtype[2]} is expected; cast one side (${first})`;
  return first;
}

/** Errors in the user's files (the compiler's own sources are checked by the project's tsc). */
export async function typeCheckModel(file: string): Promise<ModelDiagnostic[]> {
  const ts = await typescript();
  const nodeTypes = /from\s+["']node:/.test(readFileSync(file, "utf8"));
  const program = ts.createProgram([file], compilerOptions(ts, nodeTypes));
  const diags = [...program.getSyntacticDiagnostics(), ...program.getOptionsDiagnostics()];
  for (const sf of program.getSourceFiles()) {
    if (sf.isDeclarationFile || sf.fileName.startsWith(compilerDir.split(path.sep).join("/"))) continue;
    if (sf.fileName.includes("/node_modules/")) continue;
    diags.push(...program.getSemanticDiagnostics(sf));
  }
  return diags
    .filter((d) => d.category === ts.DiagnosticCategory.Error)
    .map((d) => {
      const pos = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : { line: 0, character: 0 };
      return {
        file: d.file ? path.relative(process.cwd(), d.file.fileName) || d.file.fileName : "<options>",
        line: pos.line + 1,
        col: pos.character + 1,
        message: readable(ts, d.messageText),
      };
    });
}

/** The type errors of a model file, one line each. */
export class ModelTypeError extends UserError {
  constructor(readonly diagnostics: readonly ModelDiagnostic[]) {
    const d = diagnostics[0];
    super(d.message, `${d.file}:${d.line}:${d.col}`);
    this.name = "ModelTypeError";
  }
  override get line(): string {
    return this.diagnostics.map((d) => `${d.file}:${d.line}:${d.col}: ${d.message}`).join("\n");
  }
}
