// Which node becomes which kernel. Before any launch is emitted, every node gets a disposition:
//
//   source    input / param / const: a plan buffer of its own
//   view      reshape of a materialised value, segment: an alias, no kernel
//   gemm      the last node of a matmul + epilogue chain (scale, bias, GELU, residual): one GEMM
//   absorbed  the matmul and the epilogue nodes before that last one
//   folded    a transpose of the last two dims read by matmuls only: folded into nt / tn layouts
//   region    the output of a maximal single-output DAG of elementwise ops: one generated kernel
//   member    an elementwise node inside a region (single use, computed in the region's kernel)
//   gather    the last node of a chain of data-movement ops: one gather kernel
//   inline    a data-movement node inside a gather chain
//   kernel    anything else: its op's lowering rule (rules/*.ts)
//
// Chains and regions only absorb nodes with exactly one use that is not a graph output, so every
// value a second consumer needs is materialised exactly once.

import { ELEMENTWISE_LOWERABLE } from "../../kernels/elementwise-graph.ts";
import type { Graph, Node } from "../ir/index.ts";

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

  // 3. Regions and gather chains, from the last node back (a node's users are decided first).
  const kind: Disposition[] = new Array(nodes.length);
  const regionRoot: number[] = new Array(nodes.length).fill(-1);
  for (let id = nodes.length - 1; id >= 0; id--) {
    const n = nodes[id];
    const u = single(id);
    const uk = u === undefined ? undefined : kind[u];
    if (SOURCE_OPS.has(n.op)) kind[id] = "source";
    else if (absorbed.has(id)) kind[id] = "absorbed";
    else if (gemm.has(id)) kind[id] = "gemm";
    else if (folded.has(id)) kind[id] = "folded";
    else if (n.op === "segment") kind[id] = "view";
    else if (ELEMENTWISE.has(n.op) && (n.op !== "broadcastTo" || uk === "member" || uk === "region")) {
      if (u !== undefined && (uk === "member" || uk === "region")) {
        kind[id] = "member";
        regionRoot[id] = regionRoot[u];
      } else {
        kind[id] = "region";
        regionRoot[id] = id;
      }
    } else if (isLayout(n)) {
      if (u !== undefined && (uk === "inline" || uk === "gather") && dataOperands(nodes[u]).includes(id)) kind[id] = "inline";
      else kind[id] = n.op === "reshape" ? "view" : "gather";
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
