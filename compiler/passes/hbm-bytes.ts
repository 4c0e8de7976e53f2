// An estimate of the HBM traffic of a graph: every node after fusion is one kernel that reads its
// inputs from HBM and writes its output there, nothing stays in cache between kernels. The rules:
//
// - A node moves  sum(numel(input) * bytes(input dtype)) + numel(output) * bytes(output dtype),
//   each distinct input counted once (a broadcast operand is read at its own size: [C] is C
//   elements, not B*N*C), bf16 = 2 bytes, f32 and i32 = 4.
// - Free (0 bytes): `input`, `param` and `const` nodes (they are already in memory; whoever reads
//   them pays), `reshape` (a view of contiguous data) and `segment` (a view into a packed buffer).
// - Every other layout op (permute, roll, pad, slice, concat, broadcastTo, take, pixelShuffle) is a
//   copy: read + write, like any kernel. A kernel could fold most of them into its addressing; in the
//   unfused graph they are counted as the copies an eager framework makes, and the fusions are what
//   folds them (the fused window attention reads the [B,H,W,3C] map at shifted-window addresses).
// - Fused ops follow the same rule: windowAttention reads qkv, the bias table, the scale and the
//   pad value and writes its [B,H,W,C] output; its backward reads qkv, out, dout and the small
//   inputs and writes the packed gradients. The N x N probabilities never reach HBM.
//
// It is a model of memory traffic, not a measurement: caches, tiling re-reads (a GEMM reading a
// panel more than once) and the optimizer's own traffic are not counted.

import { bytesOf, type Graph, type Node, numel } from "../ir/index.ts";

/** Ops that move no bytes: values already in memory and views. */
export const FREE_OPS: ReadonlySet<string> = new Set(["input", "param", "const", "reshape", "segment"]);

export function nodeBytes(g: Graph, n: Node): number {
  if (FREE_OPS.has(n.op)) return 0;
  let bytes = numel(n.shape) * bytesOf(n.dtype);
  for (const i of new Set(n.inputs)) {
    const x = g.nodes[i];
    bytes += numel(x.shape) * bytesOf(x.dtype);
  }
  return bytes;
}

export interface HbmBytes {
  readonly total: number;
  /** Bytes by op name. */
  readonly byOp: Readonly<Record<string, number>>;
}

export function hbmBytes(g: Graph): HbmBytes {
  let total = 0;
  const byOp: Record<string, number> = {};
  for (const n of g.nodes) {
    const b = nodeBytes(g, n);
    if (b === 0) continue;
    total += b;
    byOp[n.op] = (byOp[n.op] ?? 0) + b;
  }
  return { total, byOp };
}
