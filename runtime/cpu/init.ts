// Parameter initialisation from a graph's param nodes. Each parameter draws from its own stream
// keyed by (seed, name), so values do not depend on declaration order or on other parameters.

import { type Graph, type Node, numel } from "../../compiler/ir/index.ts";
import { roundBf16InPlace } from "./bf16.ts";
import { hashString, streamKey, uniform } from "./random.ts";
import { type HostTensor, hostTensor } from "./tensor.ts";

function normalSample(key: number, i: number, attempt: number): number {
  // Box-Muller on two uniforms of the element's own counter pair. A truncated normal's redraws use
  // streams of their own (keyed by the attempt), so a redraw never repeats another element's draw.
  const k = attempt === 0 ? key : streamKey(key, attempt);
  const u1 = uniform(k, 2 * i);
  const u2 = uniform(k, 2 * i + 1);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

export function initParam(node: Node, seed: number): HostTensor {
  const n = numel(node.shape);
  const out = hostTensor(node.shape, node.dtype);
  const args = (node.attrs.initArgs as number[] | undefined) ?? [];
  const key = streamKey(seed, hashString(String(node.attrs.name)));
  const d = out.data;
  switch (node.attrs.init) {
    case "zeros":
      break;
    case "ones":
      d.fill(1);
      break;
    case "const":
      d.fill(args[0]);
      break;
    case "normal":
      for (let i = 0; i < n; i++) d[i] = args[0] * normalSample(key, i, 0);
      break;
    case "truncNormal": {
      const [std, a, b] = args;
      for (let i = 0; i < n; i++) {
        let v = std * normalSample(key, i, 0);
        for (let t = 1; (v < a || v > b) && t < 64; t++) v = std * normalSample(key, i, t);
        d[i] = Math.min(Math.max(v, a), b);
      }
      break;
    }
    case "uniform": {
      const [lo, hi] = args;
      for (let i = 0; i < n; i++) d[i] = lo + (hi - lo) * uniform(key, i);
      break;
    }
    default:
      throw new Error(`parameter ${String(node.attrs.name)}: unknown initialiser ${String(node.attrs.init)}`);
  }
  if (node.dtype === "bf16") roundBf16InPlace(d as Float32Array);
  return out;
}

/** Fresh values for every parameter of a graph, by name. */
export function initParams(g: Graph, seed: number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const p of g.params()) out.set(String(p.attrs.name), initParam(p, seed));
  return out;
}
