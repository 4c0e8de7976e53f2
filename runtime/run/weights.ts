// Weight loading: a checkpoint's tensors become the graph's parameters, by our names or through a
// model's foreign format (e.g. torchvision's state_dict names). Every problem -- a parameter with no
// tensor, a tensor that matches no parameter, a shape that differs -- is collected and reported at
// once, by name, so one run shows everything to fix.

import type { WeightFormat } from "../../compiler/dsl/index.ts";
import { formatShape, type Graph, numel, UserError } from "../../compiler/ir/index.ts";
import { type HostTensor, hostTensor } from "../cpu/index.ts";

/** Rows [start, end) of a tensor's first axis. */
function rowsOf(t: HostTensor, [start, end]: readonly [number, number]): HostTensor {
  const row = numel(t.shape.slice(1));
  return hostTensor([end - start, ...t.shape.slice(1)], t.dtype, t.data.slice(start * row, end * row));
}

/**
 * The graph's parameters from `source`. `where` (the file) locates the error; `format` maps foreign
 * names, and without it the names must be the model's own.
 */
export function loadWeights(
  graph: Graph,
  source: ReadonlyMap<string, HostTensor>,
  where: string,
  format?: WeightFormat,
): Map<string, HostTensor> {
  const params = new Map(graph.params().map((p) => [String(p.attrs.name), p]));
  const out = new Map<string, HostTensor>();
  const from = new Map<string, string>();
  /** Parameters some tensor was meant for (a mis-shaped one is reported as such, not also as missing). */
  const offered = new Set<string>();
  const unexpected: string[] = [];
  const misshaped: string[] = [];
  const duplicate: string[] = [];
  for (const [name, tensor] of source) {
    const targets = format ? format.map(name, tensor.shape) : [{ name }];
    if (!targets) {
      unexpected.push(name);
      continue;
    }
    for (const target of targets) {
      const via = target.name === name ? name : `${name} -> ${target.name}`;
      const param = params.get(target.name);
      if (!param) {
        unexpected.push(via);
        continue;
      }
      offered.add(target.name);
      const value = target.rows ? rowsOf(tensor, target.rows) : tensor;
      if (value.shape.join() !== param.shape.join()) {
        misshaped.push(`${via}: ${formatShape(value.shape)} in the file, the model's is ${formatShape(param.shape)}`);
        continue;
      }
      if (value.dtype === "i32") {
        misshaped.push(`${via}: integer tensor for a ${param.dtype} parameter`);
        continue;
      }
      if (from.has(target.name)) {
        duplicate.push(`${target.name} (from ${from.get(target.name)} and ${name})`);
        continue;
      }
      from.set(target.name, name);
      out.set(target.name, value.dtype === param.dtype ? value : { ...value, dtype: param.dtype });
    }
  }
  const missing = [...params.keys()].filter((n) => !offered.has(n));
  const problems = [
    ...missing.map((n) => `missing: ${n} ${formatShape(params.get(n)?.shape ?? [])}`),
    ...unexpected.map((n) => `unexpected: ${n}`),
    ...misshaped.map((n) => `wrong shape: ${n}`),
    ...duplicate.map((n) => `given twice: ${n}`),
  ];
  if (problems.length > 0) {
    const how = format ? ` (read as ${format.description})` : "";
    throw new UserError(`the weights do not match the model${how}: ${problems.length} problem(s)\n${problems.join("\n")}`, where);
  }
  return out;
}
