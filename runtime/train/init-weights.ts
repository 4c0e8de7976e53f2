// --init: starting weights from another run (fine-tuning). Parameters found in the checkpoint with
// the same name and shape are loaded; the rest (a new task's head) keep their fresh
// initialisation; checkpoint tensors the model does not have (the pre-training head, the mask
// token) are unused. All three lists are reported; a same-named tensor of another shape is an error.

import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { formatShape, type Shape, UserError } from "../../compiler/ir/index.ts";
import type { HostTensor } from "../cpu/tensor.ts";
import { readSafetensors } from "../io/index.ts";
import { resolveCheckpoint } from "./checkpoint.ts";

export interface InitReport {
  readonly file: string;
  readonly loaded: readonly string[];
  readonly fresh: readonly string[];
  readonly unused: readonly string[];
}

/** The weights file --init names: a .safetensors file, or a checkpoint (root or step folder). */
export function initWeightsFile(arg: string): string {
  if (existsSync(arg) && statSync(arg).isFile()) return arg;
  return path.join(resolveCheckpoint(arg, "--init"), "model.safetensors");
}

/** Overwrites `params` with matching tensors of the --init file. */
export function applyInitWeights(
  arg: string,
  wanted: readonly { name: string; shape: Shape }[],
  params: Map<string, HostTensor>,
): InitReport {
  const file = initWeightsFile(arg);
  const tensors = readSafetensors(file);
  const loaded: string[] = [];
  const fresh: string[] = [];
  const mismatched: string[] = [];
  for (const p of wanted) {
    const t = tensors.get(p.name);
    if (!t) {
      fresh.push(p.name);
    } else if (t.shape.join() !== p.shape.join()) {
      mismatched.push(`${p.name} ${formatShape(t.shape)} vs ${formatShape(p.shape)}`);
    } else {
      params.set(p.name, { shape: [...t.shape], dtype: "f32", data: Float32Array.from(t.data) });
      loaded.push(p.name);
    }
  }
  if (mismatched.length > 0) {
    throw new UserError(
      `${mismatched.length} parameter(s) have another shape than in the model (checkpoint vs model): ${mismatched.join("; ")}`,
      file,
    );
  }
  if (loaded.length === 0) throw new UserError("no parameter of the model is in this file (is it the same model?)", file);
  const names = new Set(wanted.map((p) => p.name));
  const unused = [...tensors.keys()].filter((k) => !names.has(k));
  return { file, loaded, fresh, unused };
}

/** Counts by top-level module: "encoder 120, decoder 56". */
export function summariseNames(names: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const n of names) {
    const top = n.split(".")[0];
    counts.set(top, (counts.get(top) ?? 0) + 1);
  }
  return [...counts].map(([k, v]) => `${k} ${v}`).join(", ");
}
