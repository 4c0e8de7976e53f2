// Finds the FPN top-down merge as model/perceptnet/decoder.ts traces it and replaces it with one
// fpnMerge op:
//
//   x [B,H,W,Cin] -> [permute [0,3,1,2]] -> conv2d 1x1 (+bias) -> groupNorm (+affine) --\
//   coarse [B,D,h,w] -> upsample nearest to [H, W] -------------------------------------- add
// becomes fpnMerge(x, weight, coarse, bias?, normWeight?, normBias?){groups, eps, layout}. The
// permute is folded (layout "nhwc") only when the conv is its sole reader. A conv that is not 1x1
// with stride 1, no padding and one group, a bilinear upsample, or an interior value read elsewhere
// leaves the subgraph alone.

import type { Graph, Node } from "../ir/index.ts";
import { GraphView, otherOperand, sameNumbers } from "./graph-view.ts";
import { applyReplacements, type Replacement } from "./rewrite.ts";

function matchAt(v: GraphView, up: Node): Replacement | undefined {
  if (up.attrs.mode !== "nearest") return undefined;
  const add = v.soleUser(up.id);
  if (add?.op !== "add") return undefined;
  const gnId = otherOperand(add, up.id);
  const gn = v.is(gnId, "groupNorm");
  if (!gn || !sameNumbers(gn.shape, up.shape) || !sameNumbers(add.shape, up.shape) || v.soleUser(gn.id)?.id !== add.id)
    return undefined;
  const conv = v.is(gn.inputs[0], "conv2d");
  if (!conv || v.soleUser(conv.id)?.id !== gn.id) return undefined;
  const pointwise =
    sameNumbers(conv.attrs.stride, [1, 1]) &&
    sameNumbers(conv.attrs.padding, [0, 0]) &&
    sameNumbers(conv.attrs.dilation, [1, 1]) &&
    conv.attrs.groups === 1 &&
    sameNumbers(v.node(conv.inputs[1]).shape.slice(2), [1, 1]);
  if (!pointwise) return undefined;
  const interior = new Set([up.id, add.id, gn.id, conv.id]);
  let x = conv.inputs[0];
  let layout = "nchw";
  const perm = v.is(x, "permute");
  if (perm && sameNumbers(perm.attrs.perm, [0, 3, 1, 2]) && v.soleUser(perm.id)?.id === conv.id) {
    interior.add(perm.id);
    x = perm.inputs[0];
    layout = "nhwc";
  }
  const dtypes = new Set([...interior].map((id) => v.node(id).dtype));
  if (!v.closed(interior, add.id) || dtypes.size !== 1) return undefined;
  const [, w, bias] = conv.inputs;
  const [, normWeight, normBias] = gn.inputs;
  const attrs = {
    groups: gn.attrs.groups as number,
    eps: gn.attrs.eps as number,
    layout,
    convBias: bias !== undefined,
    normWeight: normWeight !== undefined,
    normBias: normBias !== undefined,
  };
  const optional = [bias, normWeight, normBias].filter((i): i is number => i !== undefined);
  return {
    root: add.id,
    interior,
    // The lateral conv's scope: the merge is mostly that block's work, and keeping its module path
    // keeps its checkpoint unit (decoder.lateral.N), so `ptc train --checkpoint` selects the same
    // blocks fused or not.
    emit: (g, value) => g.add("fpnMerge", [x, w, up.inputs[0], ...optional].map(value), attrs, add.loc, conv.scope).id,
  };
}

/** Replaces every exactly-matching FPN merge; returns the new graph and how many. */
export function fuseFpnMerge(graph: Graph): { graph: Graph; count: number } {
  const v = new GraphView(graph);
  const replacements: Replacement[] = [];
  for (const n of graph.nodes) {
    if (n.op !== "upsample") continue;
    const r = matchAt(v, n);
    if (r) replacements.push(r);
  }
  if (replacements.length === 0) return { graph, count: 0 };
  return { graph: applyReplacements(graph, replacements), count: replacements.length };
}
