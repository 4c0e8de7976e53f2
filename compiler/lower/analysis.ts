// Which node becomes which kernel. Before any launch is emitted, every node gets a disposition:
//
//   source    input / param / const: a plan buffer of its own
//   view      reshape of a materialised value, segment: an alias, no kernel
//   gemm      the last node of a matmul + epilogue chain (scale, bias, GELU, residual): one GEMM
//   absorbed  the matmul and the epilogue nodes before that last one
//   folded    a transpose of the last two dims read by matmuls only: folded into nt / tn layouts
//   region    the output of a maximal single-output DAG of elementwise ops: one generated kernel
//   member    an elementwise node inside a region (single use, computed in the region's kernel)
//   gather    the last node of a chain of data-movement ops, possibly mixed with elementwise ops
//             (a region reading a permute, a layout chain reading a region): one gather kernel
//   inline    a data-movement or elementwise node inside a gather chain
//   kernel    anything else: its op's lowering rule (rules/*.ts)
//
// Chains and regions only absorb nodes with exactly one use that is not a graph output, so every
// value a second consumer needs is materialised exactly once.

import { ELEMENTWISE_LOWERABLE } from "../../kernels/elementwise-graph.ts";
import type { Graph, Node, Shape } from "../ir/index.ts";

export type Disposition =
  | "source"
  | "view"
  | "gemm"
  | "absorbed"
  | "folded"
  | "region"
  | "member"
  | "gather"
  | "inline"
  | "kernel";

export interface GemmFold {
  readonly matmul: number;
  /** Every node of the chain, matmul first; the last is the chain's value. */
  readonly chain: readonly number[];
  /**
   * The chain is matmul(A^T, B) summed over all its batch dims (a weight gradient): one GEMM over
   * K' = batch * K, the batches stacked along K (contiguous in both stored operands).
   */
  readonly sumBatch?: boolean;
  /** A scalar const multiplying the product (its value). */
  readonly scale?: number;
  readonly bias?: number;
  readonly activation?: "gelu" | "geluTanh";
  readonly residual?: number;
  /**
   * The chain ends in a transpose of the product's last two dims (maybe through reshapes that keep
   * them): the GEMM writes C^T = op(B)^T op(A)^T directly (swapped operands, an nt or tn layout).
   */
  readonly transposeOut?: boolean;
}

export interface Analysis {
  readonly kind: readonly Disposition[];
  readonly users: readonly (readonly number[])[];
  readonly outputs: ReadonlySet<number>;
  /** Keyed by the chain's last node. */
  readonly gemm: ReadonlyMap<number, GemmFold>;
  /** matmul id -> whether operand A / B is read through a folded transpose. */
  readonly transposed: ReadonlyMap<number, readonly [boolean, boolean]>;
  /** Region output -> its member nodes and itself, in topological order. */
  readonly regions: ReadonlyMap<number, readonly number[]>;
}

const SOURCE_OPS = new Set(["input", "param", "const"]);
const REDUCTIONS = new Set(["sum", "mean", "max"]);
const ELEMENTWISE = new Set<string>(ELEMENTWISE_LOWERABLE);
/** Pure data movement: an output element is one input element (or a fill value). */
export const LAYOUT_OPS = new Set([
  "reshape",
  "permute",
  "slice",
  "pad",
  "roll",
  "concat",
  "broadcastTo",
  "take",
  "pixelShuffle",
]);

export function isLayout(n: Node): boolean {
  return LAYOUT_OPS.has(n.op) || (n.op === "upsample" && n.attrs.mode === "nearest");
}

/** Operand positions of a layout op that carry data (take's index is read as an index, not inlined). */
function dataOperands(n: Node): number[] {
  return n.op === "take" ? [n.inputs[0]] : [...n.inputs];
}

function isTransposeOfLastTwo(n: Node): boolean {
  if (n.op !== "permute") return false;
  const perm = (n.attrs.perm as number[]).map((p) => (p < 0 ? p + n.shape.length : p));
  const r = perm.length;
  return r >= 2 && perm.every((p, i) => (i < r - 2 ? p === i : i === r - 2 ? p === r - 1 : p === r - 2));
}

const isScalarConst = (n: Node) => n.op === "const" && (n.attrs.data as Float32Array | Int32Array).length === 1;

/** A bias of a matmul output [.., M, N]: shape [N] or [1, .., 1, N], same dtype. */
function isBias(b: Node, out: Node): boolean {
  const n = out.shape[out.shape.length - 1];
  return (
    b.dtype === out.dtype &&
    b.shape.length >= 1 &&
    b.shape[b.shape.length - 1] === n &&
    b.shape.slice(0, -1).every((d) => d === 1) &&
    b.shape.length <= out.shape.length
  );
}

/** sum over every batch dim of matmul(A^T, B) with unbroadcast, unpermuted operands. */
function isBatchSumOfTn(mm: Node, sum: Node, nodes: readonly Node[]): boolean {
  if (sum.op !== "sum" || mm.attrs.transA !== true || mm.attrs.transB === true) return false;
  const batch = mm.shape.length - 2;
  if (batch < 1) return false;
  const axes = new Set((sum.attrs.axes as number[]).map((a) => (a < 0 ? a + mm.shape.length : a)));
  if (axes.size !== batch || ![...axes].every((a) => a < batch)) return false;
  const [a, b] = mm.inputs.map((i) => nodes[i]);
  const full = (x: Node) =>
    x.shape.length === mm.shape.length && x.shape.slice(0, batch).join() === mm.shape.slice(0, batch).join();
  return full(a) && full(b) && a.op !== "permute" && b.op !== "permute";
}

/**
 * A slice that is one contiguous block of its input (unit dims before the first sliced dim, step 1
 * there, whole dims after it) starting 16-byte aligned: a view at this element offset, no kernel.
 */
export function contiguousSliceOffset(n: Node, nodes: readonly Node[]): number | undefined {
  if (n.op !== "slice") return undefined;
  const x = nodes[n.inputs[0]].shape;
  const starts = n.attrs.starts as number[];
  const steps = n.attrs.steps as number[];
  const d0 = x.findIndex((size, d) => n.shape[d] !== size);
  if (d0 < 0) return 0;
  if (steps[d0] !== 1 || n.shape.slice(0, d0).some((s) => s !== 1)) return undefined;
  if (n.shape.slice(d0 + 1).some((s, j) => s !== x[d0 + 1 + j])) return undefined;
  let offset = 0;
  let stride = 1;
  for (let d = x.length - 1; d >= 0; d--) {
    if (d <= d0) offset += starts[d] * stride;
    stride *= x[d];
  }
  const bytes = n.dtype === "bf16" ? 2 : 4;
  return (offset * bytes) % 16 === 0 ? offset : undefined;
}

/** A float sum / mean / max that reduces a non-unit dim of `x` (it then reads x through its chain). */
function reducesSomething(r: Node, x: Node): boolean {
  if (!REDUCTIONS.has(r.op) || r.inputs[0] !== x.id || x.dtype === "i32") return false;
  const rank = x.shape.length;
  return (r.attrs.axes as number[]).some((a) => x.shape[a < 0 ? a + rank : a] !== 1);
}

/** Same last two dims and the same number of matrices (a reshape that only regroups batch dims). */
function sameMatrices(a: Shape, b: Shape): boolean {
  const count = (s: Shape) => s.slice(0, -2).reduce((x, y) => x * y, 1);
  return a.slice(-2).join() === b.slice(-2).join() && count(a) === count(b);
}

function sameType(a: Node, b: Node): boolean {
  return a.dtype === b.dtype && a.shape.join() === b.shape.join();
}

export function analyse(g: Graph): Analysis {
  const nodes = g.nodes;
  const users: number[][] = nodes.map(() => []);
  for (const n of nodes) for (const i of n.inputs) users[i].push(n.id);
  const outputs = new Set(g.outputs.values());
  const single = (id: number) => (users[id].length === 1 && !outputs.has(id) ? users[id][0] : undefined);

  // 1. matmul + epilogue chains: scale -> bias -> activation -> residual, each a single-use step.
  const gemm = new Map<number, GemmFold>();
  const absorbed = new Set<number>();
  for (const mm of nodes) {
    if (mm.op !== "matmul") continue;
    const chain = [mm.id];
    const sum = single(mm.id);
    if (sum !== undefined && isBatchSumOfTn(mm, nodes[sum], nodes)) {
      absorbed.add(mm.id);
      gemm.set(sum, { matmul: mm.id, chain: [mm.id, sum], sumBatch: true });
      continue;
    }
    let fold: { scale?: number; bias?: number; activation?: "gelu" | "geluTanh"; residual?: number } = {};
    for (;;) {
      const u = single(chain[chain.length - 1]);
      if (u === undefined || absorbed.has(u) || gemm.has(u)) break;
      const un = nodes[u];
      const cur = chain[chain.length - 1];
      const other = un.inputs.length === 2 ? nodes[un.inputs[0] === cur ? un.inputs[1] : un.inputs[0]] : undefined;
      if (un.inputs.length === 2 && un.inputs[0] === un.inputs[1]) break;
      if (un.op === "mul" && other && isScalarConst(other) && !fold.scale && !fold.bias && !fold.activation && !fold.residual) {
        fold = { ...fold, scale: other.id };
      } else if (
        un.op === "add" &&
        other &&
        isBias(other, mm) &&
        sameType(un, mm) &&
        !fold.bias &&
        !fold.activation &&
        !fold.residual
      ) {
        fold = { ...fold, bias: other.id };
      } else if (un.op === "gelu" && !fold.activation && !fold.residual) {
        fold = { ...fold, activation: un.attrs.approximate === "tanh" ? "geluTanh" : "gelu" };
      } else if (un.op === "add" && other && sameType(other, mm) && sameType(un, mm) && !fold.residual) {
        fold = { ...fold, residual: other.id };
      } else break;
      chain.push(u);
    }
    const last = chain[chain.length - 1];
    for (const id of chain.slice(0, -1)) absorbed.add(id);
    gemm.set(last, {
      matmul: mm.id,
      chain,
      ...(fold.scale !== undefined ? { scale: fold.scale } : {}),
      ...(fold.bias !== undefined ? { bias: fold.bias } : {}),
      ...(fold.activation ? { activation: fold.activation } : {}),
      ...(fold.residual !== undefined ? { residual: fold.residual } : {}),
    });
  }

  // 2. transposes read by matmuls only: fold when every reader can take it (no A^T B^T layout).
  const transposed = new Map<number, [boolean, boolean]>();
  const folded = new Set<number>();
  for (const p of nodes) {
    if (!isTransposeOfLastTwo(p) || outputs.has(p.id) || users[p.id].length === 0) continue;
    if (!users[p.id].every((u) => nodes[u].op === "matmul")) continue;
    const trial = new Map<number, [boolean, boolean]>();
    let ok = true;
    for (const u of users[p.id]) {
      const mm = nodes[u];
      const t: [boolean, boolean] = [...(trial.get(u) ?? transposed.get(u) ?? [false, false])];
      if (mm.inputs[0] === p.id) t[0] = true;
      if (mm.inputs[1] === p.id) t[1] = true;
      const ta = (mm.attrs.transA === true) !== t[0];
      const tb = (mm.attrs.transB === true) !== t[1];
      if (ta && tb) ok = false;
      trial.set(u, t);
    }
    if (!ok) continue;
    folded.add(p.id);
    for (const [u, t] of trial) transposed.set(u, t);
  }

  // 2b. A GEMM value whose only use is a transpose of its last two dims (through reshapes that keep
  //     them: a weight gradient [1, in, out] -> [in, out] -> [out, in]) is written transposed by the
  //     GEMM itself, when the swapped product has a layout (tn stays tn, nt stays nt; nn would
  //     need A^T B^T) and no bias or residual is folded (they are per column / per element).
  for (const [last, fold] of [...gemm]) {
    if (fold.bias !== undefined || fold.residual !== undefined) continue;
    const mm = nodes[fold.matmul];
    const t = transposed.get(mm.id) ?? [false, false];
    const ta = (mm.attrs.transA === true) !== t[0];
    const tb = (mm.attrs.transB === true) !== t[1];
    if (!fold.sumBatch && ta === tb) continue;
    const extra: number[] = [];
    let cur = last;
    let found = false;
    for (;;) {
      const u = single(cur);
      if (u === undefined) break;
      const un = nodes[u];
      const cn = nodes[cur];
      if (un.op === "reshape" && un.shape.length >= 2 && cn.shape.length >= 2 && sameMatrices(cn.shape, un.shape)) {
        extra.push(u);
        cur = u;
        continue;
      }
      if (isTransposeOfLastTwo(un) && !folded.has(u)) {
        extra.push(u);
        found = true;
      }
      break;
    }
    if (!found) continue;
    gemm.delete(last);
    for (const id of [last, ...extra.slice(0, -1)]) absorbed.add(id);
    gemm.set(extra[extra.length - 1], { ...fold, chain: [...fold.chain, ...extra], transposeOut: true });
  }

  // 3. Regions and gather chains, from the last node back (a node's users are decided first). A
  //    single-use elementwise or data-movement node joins its user's group: elementwise into
  //    elementwise is a region (kernels/elementwise-graph.ts); as soon as a group holds a
  //    data-movement op it is a gather chain (layout.ts evaluates elementwise ops too), so a
  //    permute / pad / slice feeding an elementwise kernel, or an elementwise value feeding a
  //    layout chain, is read through the index map instead of being materialised. A reshape of a
  //    value that is materialised anyway stays a view (free) rather than joining.
  const kind: Disposition[] = new Array(nodes.length);
  const regionRoot: number[] = new Array(nodes.length).fill(-1);
  const regionMembers = new Map<number, number[]>();
  const fusible = (x: Node) => (ELEMENTWISE.has(x.op) || isLayout(x)) && !SOURCE_OPS.has(x.op);
  for (let id = nodes.length - 1; id >= 0; id--) {
    const n = nodes[id];
    const u = single(id);
    const uk = u === undefined ? undefined : kind[u];
    const intoRegion = uk === "member" || uk === "region";
    const intoGather =
      ((uk === "inline" || uk === "gather") && dataOperands(nodes[u as number]).includes(id)) ||
      (uk === "kernel" && reducesSomething(nodes[u as number], n));
    if (SOURCE_OPS.has(n.op)) kind[id] = "source";
    else if (absorbed.has(id)) kind[id] = "absorbed";
    else if (gemm.has(id)) kind[id] = "gemm";
    else if (folded.has(id)) kind[id] = "folded";
    else if (n.op === "segment") kind[id] = "view";
    else if (ELEMENTWISE.has(n.op) && (n.op !== "broadcastTo" || intoRegion)) {
      if (intoGather) kind[id] = "inline";
      else if (intoRegion) {
        kind[id] = "member";
        regionRoot[id] = regionRoot[u as number];
        regionMembers.get(regionRoot[id])?.push(id);
      } else {
        kind[id] = "region";
        regionRoot[id] = id;
        regionMembers.set(id, [id]);
      }
    } else if (isLayout(n)) {
      const x = nodes[dataOperands(n)[0]];
      // A reshape joins only when its input would join too (else the view is free).
      const input = n.op !== "reshape" || (x !== undefined && single(x.id) === id && fusible(x) && !folded.has(x.id));
      if (intoGather && input) kind[id] = "inline";
      else if (intoRegion && input) {
        // The region becomes a gather chain rooted at its root: its members so far are inlined.
        const root = regionRoot[u as number];
        for (const m of regionMembers.get(root) ?? []) {
          kind[m] = m === root ? "gather" : "inline";
          regionRoot[m] = -1;
        }
        regionMembers.delete(root);
        kind[id] = "inline";
      } else kind[id] = n.op === "reshape" || contiguousSliceOffset(n, nodes) !== undefined ? "view" : "gather";
    } else kind[id] = "kernel";
  }
  const regions = new Map<number, number[]>();
  for (let id = 0; id < nodes.length; id++) {
    const r = regionRoot[id];
    if (r < 0) continue;
    const list = regions.get(r);
    if (list) list.push(id);
    else regions.set(r, [id]);
  }
  return { kind, users, outputs, gemm, transposed, regions };
}
