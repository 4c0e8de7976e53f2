// matmul chains -> one GEMM: transposes of the last two dims read in place (nt / tn layouts), batch
// dims walked by one stride per operand (a broadcast that one stride cannot walk is materialised
// first), and the folded epilogue (scale, bias, GELU, residual) applied to the accumulator.

import { type Node, numel } from "../../ir/index.ts";
import type { LowerContext } from "../context.ts";
import { launchGather, linearIndex } from "../gather.ts";
import { launchGemm, linearBatchStride, materializeBroadcast } from "../gemm.ts";
import { reducePartials } from "../reduce.ts";
import { bf16Value } from "../values.ts";

interface Operand {
  buffer: number;
  /** Stored shape [...batch, rows, cols]. */
  shape: readonly number[];
  /** Stored transposed relative to the product's needs. */
  trans: boolean;
}

/** A^T stored as a fresh row-major buffer (only for the A^T B^T case the GEMM has no layout for). */
function transposeCopy(ctx: LowerContext, o: Operand, nodes: readonly number[]): Operand {
  const r = o.shape.length;
  const shape = [...o.shape.slice(0, -2), o.shape[r - 1], o.shape[r - 2]];
  const out = ctx.newBuffer(shape, ctx.buffers[o.buffer].dtype);
  launchGather(ctx, {
    out,
    shape,
    dtype: ctx.buffers[o.buffer].dtype,
    value: (c, read) => read(o.buffer, linearIndex([...c.slice(0, -2), c[r - 1], c[r - 2]], o.shape)),
    nodes,
    what: "transpose",
  });
  return { buffer: out, shape, trans: !o.trans };
}

export function lowerMatmulChain(ctx: LowerContext, root: Node): void {
  const fold = ctx.analysis.gemm.get(root.id);
  if (!fold) throw new Error(`lower: %${root.id} is not a matmul chain`);
  const g = ctx.graph;
  const mm = g.node(fold.matmul);
  if (mm.dtype === "i32") ctx.unsupported(mm, "integer matmul");
  const folded = ctx.analysis.transposed.get(mm.id) ?? [false, false];
  const operand = (pos: 0 | 1): Operand => {
    let n = g.node(mm.inputs[pos]);
    if (folded[pos]) n = g.node(n.inputs[0]);
    const flag = pos === 0 ? mm.attrs.transA === true : mm.attrs.transB === true;
    return { buffer: ctx.bufferOf(n.id), shape: n.shape, trans: flag !== folded[pos] };
  };
  let a = operand(0);
  let b = operand(1);
  const r = mm.shape.length;
  let [m, n] = [mm.shape[r - 2], mm.shape[r - 1]];
  const k = a.trans ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
  if (fold.transposeOut) {
    // C^T = op(B)^T op(A)^T: the operands swap and each flips its transpose (analysis.ts checked
    // that the result is nt or tn).
    [a, b] = [
      { ...b, trans: !b.trans },
      { ...a, trans: !a.trans },
    ];
    [m, n] = [n, m];
  }
  if (a.trans && b.trans) b = transposeCopy(ctx, b, fold.chain);
  const outBatch = mm.shape.slice(0, -2);
  const batch = numel(outBatch);
  const walk = (o: Operand) => {
    const matrix = o.shape[o.shape.length - 2] * o.shape[o.shape.length - 1];
    let stride = linearBatchStride(o.shape.slice(0, -2), outBatch, matrix);
    let buffer = o.buffer;
    if (stride === undefined) {
      buffer = materializeBroadcast(ctx, o.buffer, o.shape, outBatch, fold.chain);
      stride = matrix;
    }
    return { buffer, ld: o.shape[o.shape.length - 1], stride };
  };
  const out = ctx.define(root);
  if (fold.sumBatch) {
    // sum_b A_b^T B_b: the batches stacked along K (A stored [.., K, M], B [.., K, N], both contiguous).
    // Transposed (sum_b B_b^T A_b), the operands were swapped above: still tn.
    const splits = splitK(m, n, k * batch);
    if (splits > 1) {
      // Few output tiles over a long K (every token): K cut into `splits` slices, one f32 product
      // each (a batched GEMM whose batch stride walks K), summed by a reduction: every SM busy.
      const ks = (k * batch) / splits;
      const partial = ctx.newBuffer([splits, m, n], "f32");
      launchGemm(ctx, {
        dtype: mm.dtype,
        layout: "tn",
        m,
        n,
        k: ks,
        batch: splits,
        a: { buffer: a.buffer, ld: m, stride: ks * m },
        b: { buffer: b.buffer, ld: n, stride: ks * n },
        c: { buffer: partial, ld: n, stride: m * n },
        out: "f32",
        nodes: fold.chain,
        what: `matmul+sum (split-K ${splits})`,
      });
      reducePartials(ctx, {
        partial,
        outer: 1,
        chunks: splits,
        inner: m * n,
        out,
        outDtype: root.dtype as "bf16" | "f32",
        op: "sum",
        nodes: fold.chain,
        what: `matmul+sum (sum of ${splits} split-K products)`,
      });
      return;
    }
    launchGemm(ctx, {
      dtype: mm.dtype,
      layout: "tn",
      m,
      n,
      k: k * batch,
      batch: 1,
      a: { buffer: a.buffer, ld: m, stride: 0 },
      b: { buffer: b.buffer, ld: n, stride: 0 },
      c: { buffer: out, ld: n, stride: 0 },
      out: root.dtype as "bf16" | "f32",
      nodes: fold.chain,
      what: "matmul+sum",
    });
    return;
  }
  const aw = walk(a);
  const bw = walk(b);
  // A shared B under a row-major A (a linear layer on [..., tokens, C]): one GEMM over all rows.
  const stack = batch > 1 && !a.trans && bw.stride === 0 && aw.ld === k && aw.stride === m * k;
  launchGemm(ctx, {
    dtype: mm.dtype,
    layout: a.trans ? "tn" : b.trans ? "nt" : "nn",
    m: stack ? m * batch : m,
    n,
    k,
    batch: stack ? 1 : batch,
    a: aw,
    b: bw,
    c: { buffer: out, ld: n, stride: m * n },
    out: root.dtype as "bf16" | "f32",
    ...(fold.scale !== undefined ? { scale: scaleValue(ctx, fold.scale) } : {}),
    ...(fold.bias !== undefined ? { bias: ctx.bufferOf(fold.bias) } : {}),
    ...(fold.activation ? { activation: fold.activation } : {}),
    ...(fold.residual !== undefined ? { residual: { buffer: ctx.bufferOf(fold.residual), ld: n, stride: m * n } } : {}),
    nodes: fold.chain,
  });
}

/** Output tiles (64x64) below which a long-K GEMM is split along K, and the fewest K per slice. */
const SPLIT_K_BELOW_TILES = 108;
const SPLIT_K_MIN_SLICE = 512;

/** Slices of K for an m x n product (1: no split): a divisor of K leaving whole 32-deep K tiles. */
export function splitK(m: number, n: number, kTotal: number): number {
  const tiles = Math.ceil(m / 64) * Math.ceil(n / 64);
  if (tiles >= SPLIT_K_BELOW_TILES) return 1;
  let s = Math.min(Math.ceil((2 * SPLIT_K_BELOW_TILES) / tiles), Math.floor(kTotal / SPLIT_K_MIN_SLICE));
  while (s > 1 && !(kTotal % s === 0 && (kTotal / s) % 32 === 0)) s--;
  return Math.max(1, s);
}

function scaleValue(ctx: LowerContext, id: number): number {
  const c = ctx.graph.node(id);
  const v = (c.attrs.data as Float32Array | Int32Array)[0];
  return c.dtype === "bf16" ? bf16Value(v) : Math.fround(v);
}
