// Loads a model file: checks it exists, type-checks it, imports it (the .ts is transpiled in memory
// by the module hook the CLI installs, or by vitest), and returns its default-exported definition.

import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { isModelDefinition, type ModelDefinition } from "../dsl/model.ts";
import { UserError } from "../ir/index.ts";
import { ModelTypeError, typeCheckModel } from "./typecheck.ts";

export interface LoadOptions {
  /** Run the type checker first (default true). */
  typecheck?: boolean;
}

export async function loadModel(file: string, options: LoadOptions = {}): Promise<ModelDefinition> {
  const abs = path.resolve(file);
  if (!existsSync(abs) || !statSync(abs).isFile()) throw new UserError("no such model file", file);
  if (!/\.(ts|mts)$/.test(abs)) throw new UserError("a model file must be TypeScript (.ts)", file);
  if (options.typecheck !== false) {
    const diags = await typeCheckModel(abs);
    if (diags.length > 0) throw new ModelTypeError(diags);
  }
  const mod = (await import(pathToFileURL(abs).href)) as { default?: unknown };
  if (!isModelDefinition(mod.default)) {
    throw new UserError("the model file must `export default defineModel({ name, configs, defaultConfig, create })`", file);
  }
  return mod.default;
}
