// The reference executor: runs any graph node by node on the host, in f64/f32 arithmetic, rounding
// every bf16-typed value to bf16 (unless told not to). Deterministic: same graph, feeds and seed
// give the same bits. It is the numerical oracle every other backend is tested against.
// Values are immutable once computed: a reshape's output shares its input's storage, and outputs
// may share storage with feeds, so callers must not write into results or feeds in place.

import { formatLoc, formatShape, type Graph, UserError } from "../../compiler/ir/index.ts";
import { roundBf16InPlace } from "./bf16.ts";
import { cpuKernel } from "./kernels/index.ts";
import type { HostTensor } from "./tensor.ts";

export interface ExecuteOptions {
  /** Round bf16-typed values to bf16 after each op (default true). */
  roundBf16?: boolean;
  /** Seed of dropout / drop-path masks. */
  seed?: number;
  /** Keep every node's value (for debugging and gradient checks); default: free when dead. */
  keepAll?: boolean;
}

export interface Feeds {
  inputs: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>;
  params: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>;
}

function lookup(m: Feeds["inputs"], k: string): HostTensor | undefined {
  return m instanceof Map ? m.get(k) : (m as Record<string, HostTensor>)[k];
}

export interface Execution {
  outputs: Map<string, HostTensor>;
  /** Every node's value when keepAll was set. */
  values: (HostTensor | undefined)[];
}

export function execute(g: Graph, feeds: Feeds, options: ExecuteOptions = {}): Execution {
  const round = options.roundBf16 ?? true;
  const ctx = { seed: options.seed ?? 0 };
  const values: (HostTensor | undefined)[] = new Array(g.nodes.length);
  const remaining = g.useCounts();
  const isOutput = new Set(g.outputs.values());
  for (const node of g.nodes) {
    let v: HostTensor;
    if (node.op === "input" || node.op === "param") {
      const name = String(node.attrs.name);
      const fed = lookup(node.op === "input" ? feeds.inputs : feeds.params, name);
      if (!fed) throw new UserError(`no value given for ${node.op} '${name}' ${node.dtype}${formatShape(node.shape)}`, name);
      if (fed.shape.join() !== node.shape.join()) {
        throw new UserError(
          `${node.op} '${name}' has shape ${formatShape(fed.shape)}, expected ${formatShape(node.shape)}`,
          name,
        );
      }
      if ((fed.dtype === "i32") !== (node.dtype === "i32")) {
        throw new UserError(`${node.op} '${name}' is ${fed.dtype}, expected ${node.dtype}`, name);
      }
      v = fed.dtype === node.dtype ? fed : { ...fed, dtype: node.dtype };
      if (node.dtype === "bf16" && round && fed.dtype !== "bf16") {
        v = { ...v, data: Float32Array.from(fed.data) };
        roundBf16InPlace(v.data as Float32Array);
      }
    } else {
      const kernel = cpuKernel(node.op);
      if (!kernel) throw new Error(`the CPU executor has no kernel for op '${node.op}' (${formatLoc(node.loc)})`);
      v = kernel(
        node,
        node.inputs.map((i) => values[i] as HostTensor),
        ctx,
      );
      // A reshape shares its input's storage, whose values are already rounded (or were fed as bf16).
      if (node.dtype === "bf16" && round && node.op !== "reshape") roundBf16InPlace(v.data as Float32Array);
    }
    values[node.id] = v;
    if (!options.keepAll) {
      for (const i of node.inputs) {
        if (--remaining[i] === 0 && !isOutput.has(i)) values[i] = undefined;
      }
    }
  }
  const outputs = new Map<string, HostTensor>();
  for (const [k, id] of g.outputs) outputs.set(k, values[id] as HostTensor);
  return { outputs, values };
}
