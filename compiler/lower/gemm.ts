// One GEMM launch from operands described as (buffer, leading dim, batch stride): bf16 on tensor
// cores (kernels/gemm.ts) or f32 on CUDA cores (kernels/gemm-simt.ts), with the epilogue folded in.
// matmul chains and the convolutions (rules/conv.ts) both come through here.

import { defaultGemmTile, GEMM_TILE_SMALL, type GemmConfig, gemmKernel } from "../../kernels/gemm.ts";
import { simtGemmKernel } from "../../kernels/gemm-simt.ts";
import type { Shape } from "../ir/index.ts";
import type { KernelArgs, LowerContext } from "./context.ts";
import { launchGather, linearIndex } from "./gather.ts";
import { cachedKernel } from "./kernel-cache.ts";

export interface GemmOperand {
  readonly buffer: number;
  /** Elements between rows of the stored matrix. */
  readonly ld: number;
  /** Elements between batch matrices (0: one matrix for every batch). */
  readonly stride: number;
  /** Element offset into the buffer. */
  readonly offset?: number;
}

export interface GemmLaunch {
  readonly dtype: "bf16" | "f32";
  /** nn: A[M,K] B[K,N]; nt: B stored [N,K]; tn: A stored [K,M]. */
  readonly layout: "nn" | "nt" | "tn";
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly batch: number;
  readonly a: GemmOperand;
  readonly b: GemmOperand;
  readonly c: GemmOperand;
  readonly out: "bf16" | "f32";
  readonly scale?: number;
  /** A buffer of N values added to every row. */
  readonly bias?: number;
  readonly activation?: "gelu" | "geluTanh";
  readonly residual?: GemmOperand;
  readonly nodes: readonly number[];
  readonly what?: string;
}

/** CTAs of the A100 (108 SMs): below this many large tiles, 64x64 tiles give more parallelism. */
const SMALL_PROBLEM_CTAS = 108;

export function launchGemm(ctx: LowerContext, g: GemmLaunch): void {
  const batched = g.batch > 1;
  const args: Record<string, KernelArgs[string]> = {
    a: { buffer: g.a.buffer, offset: g.a.offset },
    b: { buffer: g.b.buffer, offset: g.b.offset },
    c: { buffer: g.c.buffer, offset: g.c.offset },
    M: g.m,
    N: g.n,
    K: g.k,
    lda: g.a.ld,
    ldb: g.b.ld,
    ldc: g.c.ld,
  };
  if (g.bias !== undefined) args.bias = { buffer: g.bias };
  if (g.residual) Object.assign(args, { residual: { buffer: g.residual.buffer, offset: g.residual.offset }, ldr: g.residual.ld });
  if (g.scale !== undefined) args.alpha = g.scale;
  if (batched) Object.assign(args, { batch: g.batch, strideA: g.a.stride, strideB: g.b.stride, strideC: g.c.stride });
  if (batched && g.residual) args.strideR = g.residual.stride;
  const epilogue = {
    ...(g.scale !== undefined ? { scale: true } : {}),
    ...(g.activation ? { activation: g.activation } : {}),
  };
  if (g.dtype === "f32") {
    const program = cachedKernel(simtGemmKernel, {
      layout: g.layout,
      out: g.out,
      batched,
      ...epilogue,
      ...(g.bias !== undefined ? { bias: "f32" as const } : {}),
      ...(g.residual ? { residual: "f32" as const } : {}),
    });
    ctx.launch(program, args, { writes: ["c"], nodes: g.nodes, what: g.what });
    return;
  }
  // Element alignment of every row start (leading dim, batch stride, offset) picks the copy width.
  const align = (o: GemmOperand, choices: number[]) =>
    choices.find(
      (v) => o.ld % v === 0 && (!batched || o.stride % v === 0) && ((o.offset ?? 0) + ctx.elementOffset(o.buffer)) % v === 0,
    ) ?? 1;
  const config: GemmConfig = {
    layout: g.layout,
    out: g.out,
    batched,
    ...epilogue,
    ...(g.bias !== undefined ? { bias: "bf16" as const } : {}),
    ...(g.residual ? { residual: "bf16" as const } : {}),
    alignA: align(g.a, [8, 2, 1]),
    alignB: align(g.b, [8, 2, 1]),
    alignC: Math.min(align(g.c, [2, 1]), g.residual ? align(g.residual, [2, 1]) : 2),
  };
  const large = defaultGemmTile(config);
  const ctas = Math.ceil(g.m / large.bm) * Math.ceil(g.n / large.bn) * g.batch;
  const tile = ctas < SMALL_PROBLEM_CTAS ? GEMM_TILE_SMALL : large;
  ctx.launch(cachedKernel(gemmKernel, { ...config, tile }), args, { writes: ["c"], nodes: g.nodes, what: g.what });
}

/**
 * The batch stride of an operand whose batch dims `batchShape` broadcast against the output's
 * `outBatch`, when one stride walks it (contiguous or broadcast as a whole); undefined otherwise.
 */
export function linearBatchStride(batchShape: Shape, outBatch: Shape, matrix: number): number | undefined {
  const off = outBatch.length - batchShape.length;
  const strides: number[] = [];
  let acc = matrix;
  for (let d = outBatch.length - 1; d >= 0; d--) {
    const j = d - off;
    const own = j >= 0 ? batchShape[j] : 1;
    strides[d] = own === 1 ? 0 : acc;
    acc *= own;
  }
  let s: number | undefined;
  let inner = 1;
  for (let d = outBatch.length - 1; d >= 0; d--) {
    if (outBatch[d] > 1) {
      if (s === undefined) s = strides[d];
      if (strides[d] !== s * inner) return undefined;
    }
    inner *= outBatch[d];
  }
  return s ?? 0;
}

/** Copies `buffer` (shape [...batch, r, c]) broadcast to [...outBatch, r, c]: a walkable operand. */
export function materializeBroadcast(
  ctx: LowerContext,
  buffer: number,
  shape: Shape,
  outBatch: Shape,
  nodes: readonly number[],
): number {
  const full = [...outBatch, ...shape.slice(-2)];
  const out = ctx.newBuffer(full, ctx.buffers[buffer].dtype);
  const off = full.length - shape.length;
  launchGather(ctx, {
    out,
    shape: full,
    dtype: ctx.buffers[buffer].dtype,
    value: (c, read) =>
      read(
        buffer,
        linearIndex(
          shape.map((_d, j) => c[j + off]),
          shape,
        ),
      ),
    nodes,
    what: "broadcast",
  });
  return out;
}
