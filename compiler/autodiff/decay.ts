// Which parameters get no weight decay (the Swin / BEiT / SimMIM convention): normalisation
// weights and biases, every bias, position tables (relative_position_bias_table, the V2
// continuous-position-bias MLP cpb_mlp, absolute position embeddings), the V2 attention logit
// scales, learned tokens (mask_token, cls_token), and any parameter of rank 0 or 1.

import type { Graph, Shape } from "../ir/index.ts";
import type { AdamWParam } from "./adamw.ts";

/** Path segments that mark a parameter (or a whole submodule) as decay-free. */
const EXCLUDED_SEGMENTS = new Set([
  "relative_position_bias_table",
  "cpb_mlp",
  "absolute_pos_embed",
  "pos_embed",
  "position_embedding",
  "logit_scale",
  "mask_token",
  "cls_token",
]);

/** True when `name` (a dotted torch-style path) with `shape` must not be weight-decayed. */
export function decayExcluded(name: string, shape: Shape): boolean {
  if (shape.length <= 1) return true;
  const segments = name.split(".");
  if (segments[segments.length - 1] === "bias") return true;
  // A norm module's parameters: norm, norm1, norm2, layer_norm, final_norm, ...; the torch names
  // are lower-case, so "Norm" inside a camelCase name does not match by accident.
  if (segments.slice(0, -1).some((s) => /(^|_)norm\d*$/.test(s))) return true;
  return segments.some((s) => EXCLUDED_SEGMENTS.has(s) || s.endsWith("_token"));
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
