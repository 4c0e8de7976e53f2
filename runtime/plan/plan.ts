// The planner: for a model profile, a cluster and a batch recipe, the memory per GPU and step time
// of each strategy (with and without activation checkpointing), and the cheapest that fits.

import { UserError } from "../../compiler/ir/index.ts";
import type { GpuSpec } from "./hardware.ts";
import type { ModelProfile } from "./profile.ts";
import { type Cluster, type MemoryBreakdown, memoryPerGpu, STRATEGIES, type Strategy, trafficPerGpu } from "./strategies.ts";

export interface PlanRequest {
  profile: ModelProfile;
  gpu: GpuSpec;
  gpus: number;
  nodes: number;
  globalBatch: number;
  accum: number;
  strategy: Strategy | "auto";
  /** Model FLOP utilisation assumed for compute (fraction of the bf16 peak). */
  mfu: number;
  /** Fraction of the compute time that communication can hide under. */
  overlap: number;
  /** Memory a step may use, as a fraction of the GPU's (the rest: CUDA context, NCCL buffers, fragmentation). */
  usableMemory: number;
  checkpointing: "auto" | "on" | "off";
}

export interface StrategyPlan {
  strategy: Strategy;
  checkpointing: boolean;
  memory: MemoryBreakdown;
  fits: boolean;
  computeSeconds: number;
  commSeconds: number;
  stepSeconds: number;
  imagesPerSecond: number;
}

export interface Plan {
  request: PlanRequest;
  microBatch: number;
  usableBytes: number;
  chosen: StrategyPlan | undefined;
  all: StrategyPlan[];
  assumptions: string[];
}

export function evaluate(req: PlanRequest, strategy: Strategy, checkpointing: boolean, microBatch: number): StrategyPlan {
  const cluster: Cluster = { gpus: req.gpus, gpusPerNode: Math.ceil(req.gpus / req.nodes) };
  const memory = memoryPerGpu(strategy, req.profile, cluster, microBatch, checkpointing, req.accum);
  const passes = 3 + (checkpointing ? 1 : 0); // forward + backward (2x) + recomputed forward
  const computeSeconds = (microBatch * req.accum * req.profile.flopsPerSample * passes) / (req.gpu.peakFlops * req.mfu);
  const t = trafficPerGpu(strategy, req.profile, cluster, req.accum);
  const commSeconds = t.intraNodeBytes / req.gpu.nvlinkBytesPerSec + t.interNodeBytes / req.gpu.networkBytesPerSec;
  const stepSeconds = computeSeconds + Math.max(0, commSeconds - req.overlap * computeSeconds);
  return {
    strategy,
    checkpointing,
    memory,
    fits: memory.total <= req.usableMemory * req.gpu.memoryBytes,
    computeSeconds,
    commSeconds,
    stepSeconds,
    imagesPerSecond: req.globalBatch / stepSeconds,
  };
}

export function plan(req: PlanRequest): Plan {
  if (req.nodes < 1 || req.gpus % req.nodes !== 0)
    throw new UserError(`${req.gpus} GPUs do not split evenly over ${req.nodes} nodes`, "--nodes");
  const perStep = req.gpus * req.accum;
  if (req.globalBatch % perStep !== 0) {
    throw new UserError(`global batch ${req.globalBatch} is not a multiple of gpus x accum = ${perStep}`, "--global-batch");
  }
  const microBatch = req.globalBatch / perStep;
  const ckpts = req.checkpointing === "auto" ? [false, true] : [req.checkpointing === "on"];
  const strategies = req.strategy === "auto" ? STRATEGIES : [req.strategy];
  const all = strategies.flatMap((s) => ckpts.map((c) => evaluate(req, s, c, microBatch)));
  const fitting = all.filter((p) => p.fits).sort((a, b) => a.stepSeconds - b.stepSeconds);
  const cluster = `${req.nodes} node(s) x ${req.gpus / req.nodes} GPUs`;
  return {
    request: req,
    microBatch,
    usableBytes: req.usableMemory * req.gpu.memoryBytes,
    chosen: fitting[0],
    all,
    assumptions: [
      `${req.gpu.name}: ${(req.gpu.peakFlops / 1e12).toFixed(0)} TFLOP/s dense bf16 peak at ${(req.mfu * 100).toFixed(0)}% model FLOP utilisation`,
      `training FLOPs = 3x forward (backward = 2x forward), +1x forward with activation checkpointing`,
      `bytes per parameter: bf16 compute copy 2, f32 master 4, f32 gradients 4, AdamW m+v 8; gradients reduced in f32 (4 B/param), parameters all-gathered in bf16 (2 B/param), as the device runtime does with --precision bf16`,
      `hsdp as the GPU runtime runs it: ZeRO-2 inside a node, gradient shards all-reduced across nodes; zero3 gathers each block in bf16 for the forward and again for the backward`,
      `f32 gradients as ptc's device runtime holds them: zero2/zero3/hsdp the reduced shard (a second one for a later micro-batch when accumulating), one unit's staging buffer, and the gradient plan's outputs until their unit's reduce-scatter hook (at most the root unit's and one block's live at once); ddp the full sum; zero1 the plan's full gradients, the full sum and the shard`,
      `activations from the traced graph in bf16 (outputs of all non-view ops kept for backward); checkpointing keeps each block's input and recomputes one block at a time`,
      `ring collectives; ${cluster}; NVLink ${(req.gpu.nvlinkBytesPerSec / 1e9).toFixed(0)} GB/s and network ${(req.gpu.networkBytesPerSec / 1e9).toFixed(0)} GB/s per GPU per direction; communication hides under up to ${(req.overlap * 100).toFixed(0)}% of compute`,
      `a step may use ${(req.usableMemory * 100).toFixed(0)}% of GPU memory (the rest: CUDA context, NCCL buffers, fragmentation)`,
    ],
  };
}
