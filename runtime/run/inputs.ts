// The inputs of a run: tensors from a file (matched by the model's input names), else the model's
// own sample inputs (e.g. a valid SimMIM mask), else seeded random values: f32 standard normal,
// i32 zeros. Each random input draws from its own stream keyed by (seed, name).

import type { TensorData } from "../../compiler/dsl/index.ts";
import { formatShape, type Graph, numel, UserError } from "../../compiler/ir/index.ts";
import { type HostTensor, hashString, hostTensor, streamKey, uniform } from "../cpu/index.ts";

/** Standard normal values (Box-Muller over the stream's counter pairs). */
export function randomNormal(shape: readonly number[], seed: number, name: string): HostTensor {
  const key = streamKey(seed, hashString(name));
  const n = numel(shape);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = uniform(key, 2 * i);
    const u2 = uniform(key, 2 * i + 1);
    data[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return hostTensor(shape, "f32", data);
}

/**
 * One tensor per graph input. `fromFile` (with `where` its path) wins, then `samples`; the rest are
 * random. Shapes and dtypes must match the traced inputs; every mismatch is reported at once.
 */
export function runInputs(
  graph: Graph,
  seed: number,
  fromFile?: ReadonlyMap<string, HostTensor>,
  where = "--inputs",
  samples: Record<string, TensorData> = {},
): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const problems: string[] = [];
  for (const node of graph.inputs()) {
    const name = String(node.attrs.name);
    const given = fromFile?.get(name);
    if (fromFile && !given) {
      problems.push(`missing: ${name} ${node.dtype}${formatShape(node.shape)}`);
      continue;
    }
    const sample = samples[name];
    const t = given ?? (sample ? hostTensor(sample.shape, sample.dtype, sample.data) : undefined);
    if (!t) {
      out.set(name, node.dtype === "i32" ? hostTensor(node.shape, "i32") : randomNormal(node.shape, seed, name));
      continue;
    }
    if (t.shape.join() !== node.shape.join()) {
      problems.push(`wrong shape: ${name} is ${formatShape(t.shape)}, the model takes ${formatShape(node.shape)}`);
    } else if ((t.dtype === "i32") !== (node.dtype === "i32")) {
      problems.push(`wrong dtype: ${name} is ${t.dtype}, the model takes ${node.dtype}`);
    } else {
      out.set(name, t);
    }
  }
  if (fromFile) {
    const known = new Set(graph.inputs().map((n) => String(n.attrs.name)));
    for (const name of fromFile.keys()) if (!known.has(name)) problems.push(`unexpected: ${name}`);
  }
  if (problems.length > 0) {
    const names = graph
      .inputs()
      .map((n) => `${String(n.attrs.name)} ${n.dtype}${formatShape(n.shape)}`)
      .join(", ");
    throw new UserError(`the inputs do not match the model's (${names}):\n${problems.join("\n")}`, where);
  }
  return out;
}

/**
 * Batch and image size implied by an inputs file: the first dim of its tensors, and H, W of the
 * first rank-4 (NCHW) tensor that the model also takes as a rank-4 input.
 */
export function impliedSizes(
  graph: Graph,
  shapes: ReadonlyMap<string, readonly number[]>,
): { batch?: number; imageSize?: [number, number] } {
  let batch: number | undefined;
  let imageSize: [number, number] | undefined;
  for (const node of graph.inputs()) {
    const s = shapes.get(String(node.attrs.name));
    if (!s || s.length === 0 || s.length !== node.shape.length) continue;
    batch ??= s[0];
    if (s.length === 4 && !imageSize) imageSize = [s[2], s[3]];
  }
  return { batch, imageSize };
}
