// The built-in kernels, and the catalogue of representative instances that every check runs over:
// ptxas (zero spills), the kernel table and bench/kernels.ts. compiler/lower instantiates the same
// generators with the configs a graph needs.

import { type Expr, gelu, type KernelProgram } from "../compiler/tile/index.ts";
import { windowAttentionForward } from "./attention.ts";
import { elementwiseKernel } from "./elementwise.ts";
import { GEMM_TILE_LARGE, GEMM_TILE_SMALL, type GemmConfig, gemmKernel } from "./gemm.ts";
import { groupNormForward } from "./groupnorm.ts";
import { layerNormBackward, layerNormForward, layerNormParamGrads } from "./layernorm.ts";
import { reduceColumns, reduceRows } from "./reduce.ts";
import { rmsNorm } from "./rmsnorm.ts";
import { softmaxBackward, softmaxForward } from "./softmax.ts";

export * from "./attention.ts";
export * from "./elementwise.ts";
export * from "./elementwise-graph.ts";
export * from "./gemm.ts";
export * from "./groupnorm.ts";
export * from "./layernorm.ts";
export * from "./reduce.ts";
export * from "./rmsnorm.ts";
export * from "./softmax.ts";

/** bias + GELU + residual over [tokens, C] activations with a [C] bias: the generated-kernel example. */
export function biasGeluResidualExample(tokens = 4096, channels = 1024): KernelProgram {
  return elementwiseKernel({
    name: `ew_bias_gelu_residual_${tokens}x${channels}`,
    inputs: [
      { dtype: "bf16", shape: [tokens, channels] },
      { dtype: "bf16", shape: [channels] },
      { dtype: "bf16", shape: [tokens, channels] },
    ],
    out: { dtype: "bf16", shape: [tokens, channels] },
    fn: (xs) => {
      const [x, b, r] = xs as Expr<"f32">[];
      return gelu(x.add(b)).add(r);
    },
    doc: "y = gelu(x + bias) + residual (generated)",
  });
}

export function catalogue(): KernelProgram[] {
  const gemms: GemmConfig[] = [];
  for (const layout of ["nn", "nt", "tn"] as const) {
    for (const out of ["bf16", "f32"] as const) gemms.push({ layout, out });
  }
  gemms.push(
    { layout: "nn", out: "bf16", bias: "bf16", activation: "gelu" },
    { layout: "nn", out: "bf16", bias: "bf16", activation: "geluTanh" },
    { layout: "nn", out: "bf16", scale: true, bias: "bf16", residual: "bf16" },
    { layout: "nt", out: "f32", scale: true, batched: true },
    { layout: "nn", out: "bf16", batched: true, residual: "bf16" },
    { layout: "nn", out: "bf16", tile: GEMM_TILE_SMALL, bias: "bf16", activation: "gelu" },
    { layout: "nn", out: "f32", tile: GEMM_TILE_SMALL, alignA: 2, alignB: 2 },
    { layout: "tn", out: "f32", tile: GEMM_TILE_SMALL, alignA: 1, alignB: 1, alignC: 1 },
    { layout: "nt", out: "bf16", alignA: 1, alignB: 1, alignC: 1 },
    { layout: "nn", out: "bf16", tile: GEMM_TILE_LARGE, bias: "bf16", activation: "gelu" },
  );
  return [
    ...gemms.map(gemmKernel),
    layerNormForward({ dtype: "bf16", saveStats: true }),
    layerNormForward({ dtype: "f32" }),
    layerNormForward({ dtype: "bf16", vec: 2 }),
    layerNormBackward({ dtype: "bf16" }),
    layerNormBackward({ dtype: "f32" }),
    layerNormParamGrads({ dtype: "bf16" }),
    groupNormForward({ dtype: "bf16" }),
    groupNormForward({ dtype: "f32", vec: 1 }),
    softmaxForward({ dtype: "bf16" }),
    softmaxForward({ dtype: "f32", vec: 1 }),
    softmaxBackward({ dtype: "bf16" }),
    softmaxBackward({ dtype: "f32" }),
    reduceRows({ dtype: "bf16", out: "f32", op: "sum" }),
    reduceRows({ dtype: "f32", op: "max" }),
    reduceColumns({ dtype: "f32", op: "sum" }),
    reduceColumns({ dtype: "bf16", out: "f32", op: "mean" }),
    rmsNorm({ dtype: "bf16" }),
    rmsNorm({ dtype: "f32" }),
    biasGeluResidualExample(),
    windowAttentionForward({ seq: 64, headDim: 64 }),
    windowAttentionForward({ seq: 48, headDim: 32, out: "f32" }),
  ];
}
