// Finds multi-head attention between two token sequences as model/perceptnet/cross-attention.ts
// traces it and replaces the core with one crossAttention op:
//
//   q [B,N,C] -> reshape [B,N,h,d] -> permute [0,2,1,3] -> * c ----\
//   k [B,L,C] -> reshape [B,L,h,d] -> permute [0,2,1,3] -> ^T -> matmul -> softmax -> matmul
//   v [B,L,C] -> reshape [B,L,h,d] -> permute [0,2,1,3] -------------------------------/
//     -> permute [0,2,1,3] -> reshape [B,N,C]
// becomes crossAttention(q, k, v){heads, qScale}: the head split and merge become addressing.
// The projections (and the pre-norms before them) stay ordinary ops. Anything not matching exactly
// (attention dropout, a mask, other readers of an interior value) is left alone.

import { type Graph, type Node, normAxis } from "../ir/index.ts";
import { GraphView, otherOperand, sameNumbers } from "./graph-view.ts";
import { applyReplacements, type Replacement } from "./rewrite.ts";

interface Match {
  readonly interior: Set<number>;
  readonly root: number;
  readonly q: number;
  readonly k: number;
  readonly v: number;
  readonly softmax: Node;
  readonly heads: number;
  readonly qScale: number;
}

const HEAD_PERM = [0, 2, 1, 3];

function matchAt(v: GraphView, softmax: Node): Match | undefined {
  const interior = new Set<number>([softmax.id]);
  const take = (id: number | undefined, op: string, check: (n: Node) => boolean = () => true) => {
    const n = v.is(id, op);
    if (!n || !check(n)) return undefined;
    interior.add(n.id);
    return n;
  };
  if (softmax.shape.length !== 4 || normAxis(softmax.attrs.axis as number, 4) !== 3) return undefined;
  const [batch, heads, n, l] = softmax.shape;

  /** [B, S, C] -> reshape [B, S, heads, d] -> permute [0,2,1,3]: returns the [B, S, C] tokens. */
  const splitHeads = (id: number | undefined, len: number): number | undefined => {
    const p = take(id, "permute", (x) => sameNumbers(x.attrs.perm, HEAD_PERM));
    const r = take(p?.inputs[0], "reshape", (x) => x.shape.length === 4 && sameNumbers(x.shape.slice(0, 3), [batch, len, heads]));
    const src = r ? v.node(r.inputs[0]) : undefined;
    if (!r || !src || !sameNumbers(src.shape, [batch, len, heads * r.shape[3]])) return undefined;
    return src.id;
  };

  const mm = take(softmax.inputs[0], "matmul", (x) => x.attrs.transA !== true);
  const qs = take(mm?.inputs[0], "mul");
  const cId = qs?.inputs.find((i) => v.scalarConst(i) !== undefined && v.node(i).shape.length <= 1);
  if (!mm || !qs || cId === undefined) return undefined;
  const q = splitHeads(otherOperand(qs, cId), n);
  let kHeads: number | undefined = mm.inputs[1];
  if (mm.attrs.transB !== true) kHeads = take(kHeads, "permute", (x) => sameNumbers(x.attrs.perm, [0, 1, 3, 2]))?.inputs[0];
  const k = splitHeads(kHeads, l);

  const pv = v.soleUser(softmax.id);
  if (pv?.op !== "matmul" || pv.inputs[0] !== softmax.id || pv.attrs.transA === true || pv.attrs.transB === true)
    return undefined;
  interior.add(pv.id);
  const vTokens = splitHeads(pv.inputs[1], l);
  const merge = v.soleUser(pv.id);
  const out = merge && merge.op === "permute" && sameNumbers(merge.attrs.perm, HEAD_PERM) ? v.soleUser(merge.id) : undefined;
  if (q === undefined || k === undefined || vTokens === undefined || !merge || !out || out.op !== "reshape") return undefined;
  const c = v.node(q).shape[2];
  if (!sameNumbers(out.shape, [batch, n, c]) || v.node(k).shape[2] !== c || v.node(vTokens).shape[2] !== c) return undefined;
  interior.add(merge.id).add(out.id);
  if (!v.closed(interior, out.id)) return undefined;
  const dtypes = new Set([...interior, q, k, vTokens].map((id) => v.node(id).dtype));
  if (dtypes.size !== 1) return undefined;
  return { interior, root: out.id, q, k, v: vTokens, softmax, heads, qScale: v.scalarConst(cId) as number };
}

/** Replaces every exactly-matching cross-attention core; returns the new graph and how many. */
export function fuseCrossAttention(graph: Graph): { graph: Graph; count: number } {
  const v = new GraphView(graph);
  const replacements: Replacement[] = [];
  const claimed = new Set<number>();
  for (const n of graph.nodes) {
    if (n.op !== "softmax") continue;
    const m = matchAt(v, n);
    if (!m || [...m.interior].some((id) => claimed.has(id))) continue;
    for (const id of m.interior) claimed.add(id);
    replacements.push({
      root: m.root,
      interior: m.interior,
      emit: (g, value) =>
        g.add(
          "crossAttention",
          [value(m.q), value(m.k), value(m.v)],
          { heads: m.heads, qScale: m.qScale },
          m.softmax.loc,
          m.softmax.scope,
        ).id,
    });
  }
  if (replacements.length === 0) return { graph, count: 0 };
  return { graph: applyReplacements(graph, replacements), count: replacements.length };
}
