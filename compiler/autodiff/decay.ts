// Which parameters get no weight decay (the Swin / SimMIM convention): normalisation weights and
// biases, every bias, position tables (the V1 relative-position bias table, the whole V2
// continuous-position-bias MLP, absolute position embeddings), the V2 attention logit scales,
// learned tokens (mask token, cls token), and any parameter of rank 0 or 1.

import type { Graph, Shape } from "../ir/index.ts";
import type { AdamWParam } from "./adamw.ts";

/**
 * Path segments that mark a parameter (or a whole submodule) as decay-free, compared lower-case
 * without underscores so torch's snake_case and our camelCase names both match
 * (relative_position_bias_table / relativePositionBiasTable, cpb_mlp / cpbMlp, ...).
 */
const EXCLUDED_SEGMENTS = new Set([
  "relativepositionbiastable",
  "cpbmlp",
  "absoluteposembed",
  "posembed",
  "positionembedding",
  "logitscale",
  "masktoken",
  "clstoken",
]);

const canonical = (segment: string) => segment.toLowerCase().replace(/_/g, "");

/** True when `name` (a dotted parameter path) with `shape` must not be weight-decayed. */
export function decayExcluded(name: string, shape: Shape): boolean {
  if (shape.length <= 1) return true;
  const segments = name.split(".").map(canonical);
  if (segments[segments.length - 1] === "bias") return true;
  // A norm module's parameters: norm, norm1, layerNorm, final_norm, norms.3, ...
  if (segments.slice(0, -1).some((s) => /norms?\d*$/.test(s))) return true;
  return segments.some((s) => EXCLUDED_SEGMENTS.has(s) || s.endsWith("token"));
}
/** The AdamW parameter list of a graph: every floating-point parameter, decay by decayExcluded. */
export function adamwParams(g: Graph, exclude: (name: string, shape: Shape) => boolean = decayExcluded): AdamWParam[] {
  return g
    .params()
    .filter((p) => p.dtype !== "i32")
    .map((p) => {
      const name = String(p.attrs.name);
      return { name, shape: p.shape, decay: !exclude(name, p.shape) };
    });
}
