// Finds shifted-window attention as model/perceptnet/window-attention.ts traces it (its op chain is
// pinned by test/model/pattern.test.ts) and replaces it with one windowAttention op:
//
//   x -> [pad] -> [roll -s] -> partition -> qkv linear -> split heads
//     -> V1: (q * c) @ k^T        | V2: normalize(q) @ normalize(k)^T * scale
//     -> + bias chain(take(table, relative index) permuted)  -> [+ shift-mask constant] -> softmax
//     -> @ v -> merge heads -> proj linear -> reverse partition -> [roll +s] -> [crop]
// becomes
//   x -> qkv linear -> windowAttention(qkv map, bias chain(table), scale?, qkv bias?) -> proj linear
//
// The linears are per-token, so they commute with pad/roll/partition; elementwise ops commute with
// the gather. Every node, attribute, shape and constant (the relative index, the mask) is checked;
// interior values may have no other readers. Anything else is left alone.

import { type Attrs, type Graph, type Node, normAxis, numel, opSpec } from "../ir/index.ts";
import { paddedExtent, relativeIndex, shiftRegion } from "../ir/ops/fused.ts";
import { GraphView, otherOperand, sameNumbers } from "./graph-view.ts";
import { applyReplacements, type Replacement } from "./rewrite.ts";

/** A linear layer's pieces: matmul(tokens, weight) [+ bias]. */
interface Linear {
  readonly matmul: Node;
  readonly weight: number;
  readonly bias?: { readonly add: Node; readonly id: number };
  /** The linear's output (the add, or the matmul without bias). */
  readonly out: Node;
}

interface Match {
  readonly interior: Set<number>;
  readonly root: number;
  readonly x: number;
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly softmax: Node;
  readonly table: number;
  /** Elementwise ops applied after the gather, to re-apply on the table (in order). */
  readonly tableOps: readonly TableOp[];
  readonly scale?: number;
  readonly attrs: Attrs;
}

/** Walks a chain backwards, collecting interior nodes; every step checks op and attributes. */
class Walker {
  readonly interior = new Set<number>();
  constructor(readonly v: GraphView) {}
  take(id: number | undefined, op: string, check: (n: Node) => boolean = () => true): Node | undefined {
    const n = this.v.is(id, op);
    if (!n || !check(n)) return undefined;
    this.interior.add(n.id);
    return n;
  }
}

const isPerm = (perm: readonly number[]) => (n: Node) => sameNumbers(n.attrs.perm, perm);
const isShape = (shape: readonly number[]) => (n: Node) => sameNumbers(n.shape, shape);

/** matmul(a, b^T) written as matmul(a, permute(b, swap last two)) or matmul(a, b, transB). */
function matchTransposedRight(w: Walker, mm: Node): number | undefined {
  if (mm.attrs.transA === true) return undefined;
  if (mm.attrs.transB === true) return mm.inputs[1];
  const r = w.v.node(mm.inputs[1]).shape.length;
  const perm = [...Array(r).keys()];
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return w.take(mm.inputs[1], "permute", isPerm(perm))?.inputs[0];
}

/** x / max(sqrt(sum(x * x, last, keepdims)), eps) -> { x, eps }. */
function matchNormalize(w: Walker, id: number): { x: number; eps: number } | undefined {
  const div = w.take(id, "div");
  if (!div) return undefined;
  const x = div.inputs[0];
  const max = w.take(div.inputs[1], "maximum");
  if (!max) return undefined;
  const sqrtId = max.inputs.find((i) => w.v.node(i).op === "sqrt");
  const epsId = sqrtId === undefined ? undefined : otherOperand(max, sqrtId);
  const eps = epsId === undefined ? undefined : w.v.scalarConst(epsId);
  const sqrt = w.take(sqrtId, "sqrt");
  const rank = w.v.node(x).shape.length;
  const lastAxis = (n: Node) => sameNumbers(n.attrs.axes, [rank - 1]) || sameNumbers(n.attrs.axes, [-1]);
  const sum = w.take(sqrt?.inputs[0], "sum", (n) => n.attrs.keepdims === true && lastAxis(n));
  const sq = w.take(sum?.inputs[0], "mul", (n) => n.inputs[0] === x && n.inputs[1] === x);
  if (!sq || eps === undefined || !(eps > 0)) return undefined;
  return { x, eps };
}

/** A linear layer producing `out`: [add(matmul(a, W), bias)] with W rank 2 and bias rank 1. */
function matchLinear(w: Walker, outId: number, input: (a: number) => boolean): Linear | undefined {
  const outNode = w.v.node(outId);
  let mmId = outId;
  let bias: Linear["bias"];
  if (outNode.op === "add") {
    const mmSide = outNode.inputs.find((i) => w.v.node(i).op === "matmul" && input(w.v.node(i).inputs[0]));
    const biasId = mmSide === undefined ? undefined : otherOperand(outNode, mmSide);
    if (mmSide === undefined || biasId === undefined) return undefined;
    const b = w.v.node(biasId);
    if (b.shape.length !== 1 || b.shape[0] !== outNode.shape[outNode.shape.length - 1]) return undefined;
    w.interior.add(outNode.id);
    bias = { add: outNode, id: biasId };
    mmId = mmSide;
  }
  const mm = w.take(
    mmId,
    "matmul",
    (n) => n.attrs.transA !== true && input(n.inputs[0]) && w.v.node(n.inputs[1]).shape.length === 2,
  );
  if (!mm) return undefined;
  return { matmul: mm, weight: mm.inputs[1], bias, out: bias ? bias.add : mm };
}

/** An elementwise op of the bias chain and which of its inputs carries the chain. */
interface TableOp {
  readonly node: Node;
  readonly main: number;
}

/** The V1/V2 bias term: ops after take(table, relative index){axis 0}, one permute [2,0,1] among them. */
function matchBias(w: Walker, id: number, window: number, heads: number): { table: number; ops: TableOp[] } | undefined {
  const ops: TableOp[] = [];
  let permuted = false;
  let cur = w.v.node(id);
  while (cur.op !== "take") {
    let main = 0;
    if (cur.op === "permute" && !permuted && sameNumbers(cur.attrs.perm, [2, 0, 1])) {
      permuted = true;
    } else if (opSpec(cur.op).elementwise && cur.op !== "cast" && cur.op !== "where" && cur.inputs.length <= 2) {
      if (cur.inputs.length === 2) {
        // The other operand must be a one-element constant of rank <= 1, so it broadcasts the same
        // way over the [(2M-1)^2, heads] table as over the gathered [heads, N, N] bias.
        const c = cur.inputs.findIndex((i) => w.v.scalarConst(i) !== undefined && w.v.node(i).shape.length <= 1);
        main = 1 - c;
        if (c < 0 || cur.inputs[0] === cur.inputs[1]) return undefined;
      }
      if (!sameNumbers(w.v.node(cur.inputs[main]).shape, cur.shape)) return undefined;
      ops.unshift({ node: cur, main });
    } else return undefined;
    w.interior.add(cur.id);
    cur = w.v.node(cur.inputs[main]);
  }
  const n = window * window;
  const side = 2 * window - 1;
  const take = w.take(cur.id, "take", (t) => t.attrs.axis === 0);
  const table = take ? w.v.node(take.inputs[0]) : undefined;
  if (!take || !permuted || !table || !sameNumbers(table.shape, [side * side, heads])) return undefined;
  const index = w.v.constValues(take.inputs[1]);
  if (!index || !sameNumbers(w.v.node(take.inputs[1]).shape, [n, n]) || index.length !== n * n) return undefined;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (index[i * n + j] !== relativeIndex(i, j, window)) return undefined;
  return { table: table.id, ops };
}

/** True when `data` is the [nW, 1, N, N] shift mask: `value` across regions, 0 within one. */
function isShiftMask(data: ArrayLike<number>, padded: [number, number], window: number, shift: [number, number], value: number) {
  const n = window * window;
  const ww = padded[1] / window;
  const windows = (padded[0] / window) * ww;
  if (data.length !== windows * n * n) return false;
  const region = new Int32Array(n);
  for (let wi = 0; wi < windows; wi++) {
    for (let t = 0; t < n; t++) {
      const py = Math.floor(wi / ww) * window + Math.floor(t / window);
      const px = (wi % ww) * window + (t % window);
      region[t] = shiftRegion(py, padded[0], window, shift[0]) * 3 + shiftRegion(px, padded[1], window, shift[1]);
    }
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) if (data[(wi * n + i) * n + j] !== (region[i] === region[j] ? 0 : value)) return false;
  }
  return true;
}

const rollShift = (n: Node, sizes: readonly number[]) =>
  sameNumbers(n.attrs.axes, [1, 2])
    ? (n.attrs.shifts as number[]).map((s, i) => ((s % sizes[i]) + sizes[i]) % sizes[i])
    : undefined;

/** The match anchored at a softmax node, or undefined. */
function matchAt(v: GraphView, softmax: Node): Match | undefined {
  const w = new Walker(v);
  if (softmax.shape.length !== 4 || normAxis(softmax.attrs.axis as number, 4) !== 3) return undefined;
  const [bw, heads, n] = softmax.shape;
  const window = Math.round(Math.sqrt(n));
  if (window * window !== n || softmax.shape[3] !== n) return undefined;
  w.interior.add(softmax.id);
  const same = isShape(softmax.shape);

  // ---- backwards from the softmax: mask, bias, logits ----
  let logitsId = softmax.inputs[0];
  let mask: { id: number; windows: number } | undefined;
  const maskOut = w.take(logitsId, "reshape", same);
  if (maskOut) {
    const add = w.take(maskOut.inputs[0], "add");
    const r5Id = add?.inputs.find((i) => v.node(i).op === "reshape");
    const r5 = w.take(r5Id, "reshape");
    const maskId = add && r5 ? otherOperand(add, r5.id) : undefined;
    if (!add || !r5 || maskId === undefined || r5.shape.length !== 5 || v.node(maskId).op !== "const") return undefined;
    const windows = r5.shape[1];
    if (!sameNumbers(r5.shape, [bw / windows, windows, heads, n, n]) || !sameNumbers(v.node(maskId).shape, [windows, 1, n, n]))
      return undefined;
    if (!sameNumbers(add.shape, r5.shape)) return undefined;
    mask = { id: maskId, windows };
    logitsId = r5.inputs[0];
  }
  const biasAdd = w.take(logitsId, "add", same);
  if (!biasAdd) return undefined;
  let bias: ReturnType<typeof matchBias>;
  let coreId: number | undefined;
  for (const side of [1, 0]) {
    const trial = new Walker(v);
    bias = matchBias(trial, biasAdd.inputs[side], window, heads);
    if (bias) {
      for (const id of trial.interior) w.interior.add(id);
      coreId = biasAdd.inputs[1 - side];
      break;
    }
  }
  if (!bias || coreId === undefined) return undefined;

  // V1: matmul(q * c, k^T); V2: matmul(normalize(q), normalize(k)^T) * scale.
  let qId: number | undefined;
  let kId: number | undefined;
  const attrs: Record<string, number | boolean | number[]> = { heads, window };
  let scale: number | undefined;
  const core = v.node(coreId);
  if (core.op === "mul") {
    const mmId = core.inputs.find((i) => v.node(i).op === "matmul");
    scale = mmId === undefined ? undefined : otherOperand(core, mmId);
    const s = scale === undefined ? undefined : v.node(scale);
    if (!s || numel(s.shape) !== heads || !sameNumbers(s.shape.slice(-3), [heads, 1, 1]) || !same(core)) return undefined;
    w.interior.add(core.id);
    const mm = w.take(mmId, "matmul", same);
    const nq = mm && mm.attrs.transA !== true ? matchNormalize(w, mm.inputs[0]) : undefined;
    const ktId = mm ? matchTransposedRight(w, mm) : undefined;
    const nk = ktId === undefined ? undefined : matchNormalize(w, ktId);
    if (!nq || !nk || nq.eps !== nk.eps) return undefined;
    Object.assign(attrs, { cosine: true, normEps: nq.eps });
    [qId, kId] = [nq.x, nk.x];
  } else {
    const mm = w.take(coreId, "matmul", same);
    const qs = w.take(mm?.inputs[0], "mul");
    const cId = qs?.inputs.find((i) => v.scalarConst(i) !== undefined && v.node(i).shape.length <= 1);
    const ktId = mm ? matchTransposedRight(w, mm) : undefined;
    if (!mm || !qs || cId === undefined || ktId === undefined || mm.attrs.transA === true) return undefined;
    Object.assign(attrs, { cosine: false, qScale: v.scalarConst(cId) as number });
    [qId, kId] = [otherOperand(qs, cId), ktId];
  }

  // ---- forwards from the softmax: @ v, merge heads, proj, reverse, roll back, crop ----
  const pv = v.soleUser(softmax.id);
  if (pv?.op !== "matmul" || pv.inputs[0] !== softmax.id || pv.attrs.transA === true || pv.attrs.transB === true)
    return undefined;
  w.interior.add(pv.id);
  const vId = pv.inputs[1];

  // q, k, v: reshape [bw, heads, n, d] <- slice i of permute [2,0,3,1,4] <- reshape [bw, n, 3, heads, d] <- qkv.
  const parts = [qId, kId, vId].map((id, i) => {
    const r = w.take(id, "reshape");
    const d = r?.shape[3];
    const sl = w.take(r?.inputs[0], "slice", (s) => {
      const [sb, sh, sn, sd] = [bw, heads, n, d as number];
      return (
        sameNumbers(s.attrs.starts, [i, 0, 0, 0, 0]) &&
        sameNumbers(s.attrs.ends, [i + 1, sb, sh, sn, sd]) &&
        sameNumbers(s.attrs.steps, [1, 1, 1, 1, 1])
      );
    });
    if (!r || !sl || !sameNumbers(r.shape, [bw, heads, n, d as number])) return undefined;
    return sl.inputs[0];
  });
  if (parts.some((p) => p === undefined) || parts[0] !== parts[1] || parts[1] !== parts[2]) return undefined;
  const split = w.take(parts[0], "permute", isPerm([2, 0, 3, 1, 4]));
  const r5 = w.take(
    split?.inputs[0],
    "reshape",
    (r) => r.shape.length === 5 && r.shape[0] === bw && r.shape[1] === n && r.shape[2] === 3 && r.shape[3] === heads,
  );
  if (!r5) return undefined;
  const d = r5.shape[4];
  const c = heads * d;

  // The partition: reshape [bw, n, Cin] <- permute [0,1,3,2,4,5] <- reshape [B, Hp/M, M, Wp/M, M, Cin] <- [roll] <- [pad] <- x.
  let x = -1;
  let padded: [number, number] = [0, 0];
  let shift: [number, number] = [0, 0];
  const isTokens = (id: number) => {
    const t = v.node(id);
    if (t.op !== "reshape" || t.shape.length !== 3 || t.shape[0] !== bw || t.shape[1] !== n) return false;
    const p = v.is(t.inputs[0], "permute");
    const r6 = p && isPerm([0, 1, 3, 2, 4, 5])(p) ? v.is(p.inputs[0], "reshape") : undefined;
    if (!p || !r6 || r6.shape.length !== 6 || r6.shape[2] !== window || r6.shape[4] !== window) return false;
    return true;
  };
  const qkv = matchLinear(w, r5.inputs[0], isTokens);
  if (!qkv || qkv.out.shape[2] !== 3 * c) return undefined;
  const tokens = w.take(qkv.matmul.inputs[0], "reshape");
  const part = w.take(tokens?.inputs[0], "permute");
  const r6 = w.take(part?.inputs[0], "reshape");
  if (!tokens || !part || !r6) return undefined;
  const [batch, wh, , wwin] = r6.shape;
  padded = [wh * window, wwin * window];
  if (batch * wh * wwin !== bw) return undefined;
  let src = v.node(r6.inputs[0]);
  if (!sameNumbers(src.shape, [batch, padded[0], padded[1], r6.shape[5]])) return undefined;
  if (src.op === "roll") {
    const s = rollShift(src, padded);
    if (!s) return undefined;
    // The roll is by -shift: shift = (-rollShift) mod padded.
    shift = [(padded[0] - s[0]) % padded[0], (padded[1] - s[1]) % padded[1]];
    w.interior.add(src.id);
    src = v.node(src.inputs[0]);
  }
  let height = padded[0];
  let width = padded[1];
  if (src.op === "pad") {
    const inner = v.node(src.inputs[0]).shape;
    if (src.attrs.value !== 0 || !sameNumbers(src.attrs.pads, [0, 0, 0, padded[0] - inner[1], 0, padded[1] - inner[2], 0, 0]))
      return undefined;
    [height, width] = [inner[1], inner[2]];
    w.interior.add(src.id);
    src = v.node(src.inputs[0]);
  }
  x = src.id;
  if (paddedExtent(height, window) !== padded[0] || paddedExtent(width, window) !== padded[1]) return undefined;
  const shifted = shift[0] + shift[1] > 0;
  if (shifted !== (mask !== undefined)) return undefined;
  if (mask) {
    const data = v.constValues(mask.id) as Float32Array;
    const value = data.find((e) => e !== 0);
    if (value === undefined || !isShiftMask(data, padded, window, shift, value)) return undefined;
    attrs.maskValue = value;
  }

  // Forwards: merge heads, proj, reverse partition, roll back, crop.
  const m1 = v.soleUser(pv.id);
  const m2 = m1 && isPerm([0, 2, 1, 3])(m1) && m1.op === "permute" ? v.soleUser(m1.id) : undefined;
  if (!m1 || !m2 || m2.op !== "reshape" || !sameNumbers(m2.shape, [bw, n, c])) return undefined;
  w.interior.add(m1.id).add(m2.id);
  const projMm = v.soleUser(m2.id);
  if (projMm?.op !== "matmul" || projMm.inputs[0] !== m2.id) return undefined;
  const next = v.soleUser(projMm.id);
  const proj = matchLinear(w, next?.op === "add" ? next.id : projMm.id, (a) => a === m2.id);
  if (!proj) return undefined;
  const cout = proj.out.shape[2];
  const rev = [
    ["reshape", (r: Node) => sameNumbers(r.shape, [batch, wh, wwin, window, window, cout])],
    ["permute", isPerm([0, 1, 3, 2, 4, 5])],
    ["reshape", (r: Node) => sameNumbers(r.shape, [batch, padded[0], padded[1], cout])],
  ] as const;
  let end = proj.out;
  for (const [op, check] of rev) {
    const u = v.soleUser(end.id);
    if (!u || u.op !== op || !check(u)) return undefined;
    w.interior.add(u.id);
    end = u;
  }
  let u = v.soleUser(end.id);
  if (shifted) {
    const s = u?.op === "roll" ? rollShift(u, padded) : undefined;
    if (!u || !s || s[0] !== shift[0] || s[1] !== shift[1]) return undefined;
    w.interior.add(u.id);
    end = u;
    u = v.soleUser(end.id);
  }
  // Crop: slices with start 0 and step 1 that cut only H and W, until the map is [B, H, W, Cout].
  while (u?.op === "slice" && !sameNumbers(end.shape, [batch, height, width, cout])) {
    const ok = sameNumbers(u.attrs.starts, [0, 0, 0, 0]) && sameNumbers(u.attrs.steps, [1, 1, 1, 1]);
    const ends = u.attrs.ends as number[];
    if (!ok || ends[0] !== batch || ends[3] !== cout || ends[1] < height || ends[2] < width) return undefined;
    w.interior.add(u.id);
    end = u;
    u = v.soleUser(end.id);
  }
  // Full-range slices the DSL may have left after the crop.
  while (u?.op === "slice" && sameNumbers(u.shape, end.shape) && sameNumbers(u.attrs.starts, [0, 0, 0, 0])) {
    w.interior.add(u.id);
    end = u;
    u = v.soleUser(end.id);
  }
  if (!sameNumbers(end.shape, [batch, height, width, cout])) return undefined;
  if (!v.closed(w.interior, end.id)) return undefined;
  const dtypes = new Set([...w.interior].map((id) => v.node(id).dtype));
  if (dtypes.size !== 1) return undefined;

  const padInput = (height !== padded[0] || width !== padded[1]) && qkv.bias !== undefined;
  Object.assign(attrs, { shift, padInput });
  return { interior: w.interior, root: end.id, x, qkv, proj, softmax, table: bias.table, tableOps: bias.ops, scale, attrs };
}

/**
 * Emits a linear on a [B, H, W, C] map, keeping the original's operand order, attributes and
 * locations. The map is viewed as [B*H*W, C] rows (free reshapes), so the weight gradient is one
 * [C, rows] x [rows, C'] GEMM instead of per-row partial products summed afterwards.
 */
function emitLinear(g: Graph, value: (id: number) => number, l: Linear, input: number): number {
  const shape = g.node(input).shape;
  const rows = g.add(
    "reshape",
    [input],
    { shape: [numel(shape.slice(0, -1)), shape[shape.length - 1]] },
    l.matmul.loc,
    l.matmul.scope,
  ).id;
  let y = g.add("matmul", [rows, value(l.weight)], l.matmul.attrs, l.matmul.loc, l.matmul.scope).id;
  if (l.bias) {
    const b = value(l.bias.id);
    const ins = l.bias.add.inputs[0] === l.bias.id ? [b, y] : [y, b];
    y = g.add("add", ins, l.bias.add.attrs, l.bias.add.loc, l.bias.add.scope).id;
  }
  const out = g.node(y).shape;
  return g.add("reshape", [y], { shape: [...shape.slice(0, -1), out[out.length - 1]] }, l.matmul.loc, l.matmul.scope).id;
}

function replacement(m: Match): Replacement {
  return {
    root: m.root,
    interior: m.interior,
    emit(g, value) {
      const qkv = emitLinear(g, value, m.qkv, value(m.x));
      let table = value(m.table);
      for (const { node, main } of m.tableOps) {
        const ins = node.inputs.map((i, k) => (k === main ? table : value(i)));
        table = g.add(node.op, ins, node.attrs, node.loc, node.scope).id;
      }
      const inputs = [qkv, table];
      if (m.scale !== undefined) inputs.push(value(m.scale));
      if (m.attrs.padInput === true && m.qkv.bias) inputs.push(value(m.qkv.bias.id));
      const sm = m.softmax;
      const attn = g.add("windowAttention", inputs, m.attrs, sm.loc, sm.scope).id;
      return emitLinear(g, value, m.proj, attn);
    },
  };
}

/** Replaces every exactly-matching window attention; returns the new graph and how many. */
export function fuseWindowAttention(graph: Graph): { graph: Graph; count: number } {
  const v = new GraphView(graph);
  const matches: Match[] = [];
  const claimed = new Set<number>();
  for (const n of graph.nodes) {
    if (n.op !== "softmax" || claimed.has(n.id)) continue;
    const m = matchAt(v, n);
    if (!m || [...m.interior].some((id) => claimed.has(id))) continue;
    for (const id of m.interior) claimed.add(id);
    matches.push(m);
  }
  if (matches.length === 0) return { graph, count: 0 };
  return { graph: applyReplacements(graph, matches.map(replacement)), count: matches.length };
}
