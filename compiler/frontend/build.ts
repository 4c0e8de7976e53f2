// `ptc build` as a function: the pipeline's named stages, in order. Each later issue appends its
// stage here (autodiff, fusion, lowering, codegen), so the whole path reads top to bottom.

import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { grad } from "../autodiff/index.ts";
import { type TracedModel, traceModel } from "../dsl/model.ts";
import { type Graph, type GraphStats, graphStats, graphToJSON, numel, printGraph } from "../ir/index.ts";
import { planToJSON } from "../lower/index.ts";
import { cse, dce, type FusionCounts, fuse, hbmBytes } from "../passes/index.ts";
import { writeKernels } from "./kernels-stage.ts";
import { loadModel } from "./load.ts";
import { lowerStage } from "./lower-stage.ts";

export interface BuildOptions {
  config?: string;
  task?: string;
  batch?: number;
  imageSize?: readonly [number, number];
  /** Trace the training-mode forward (dropout active); the kernels are then the training step's (forward + backward of `loss`). */
  training?: boolean;
  /** Compute dtype of the traced model (bf16: the model casts its f32 parameters); default f32. */
  precision?: "f32" | "bf16";
  /** Artifact folder; default dist/<model>-<config>. */
  out?: string;
  typecheck?: boolean;
  /** Write graph.json / graph.txt (default true). */
  write?: boolean;
  /** Run the pattern fusions (window attention, FPN merge, cross-attention); default true. */
  fuse?: boolean;
  /** Lower the graph to kernels and write them (kernels/*.ptx, *.cubin, the kernel table, plan.json); default true. */
  kernels?: boolean;
  /** Fail when ptxas is not on PATH (default: write PTX only and say so). */
  requirePtxas?: boolean;
}

/** What the lower and codegen stages produced (null with kernels: false). */
export interface KernelsSummary {
  /** The graph the plan runs: the fused one, or the unfused one when fused ops have no kernel yet. */
  graph: "fused" | "unfused";
  /** What the plan computes: the forward, or (--training, with a scalar `loss`) the training step. */
  step: "forward" | "training step";
  reason: string | null;
  launches: number;
  /** Distinct kernels (PTX modules). */
  kernels: number;
  buffers: number;
  /** "ptxas <version>", or null when ptxas is not on PATH (PTX written, not assembled). */
  ptxas: string | null;
  assembled: number;
  /** Kernels with spill bytes or a stack frame (0 expected). */
  spills: number;
  maxRegisters: number | null;
}

/** Estimated HBM bytes (compiler/passes/hbm-bytes.ts) with and without the pattern fusions. */
export interface FusedUnfused {
  fused: number;
  unfused: number;
}

export interface ComponentParams {
  name: string;
  params: number;
}

export interface BuildResult {
  model: string;
  config: string;
  task: string | undefined;
  batch: number;
  traced: TracedModel;
  graph: Graph;
  stats: GraphStats;
  /** Forward FLOPs per sample. */
  flopsPerSample: number;
  components: ComponentParams[];
  /** Fusions applied to `graph` (all 0 with fuse: false). */
  fusions: FusionCounts;
  /** Forward, and training step (forward + backward of the training-mode trace's scalar `loss`; null without one). */
  hbmBytes: { forward: FusedUnfused; trainingStep: FusedUnfused | null };
  outDir: string | undefined;
  artifacts: string[];
  /** Seconds per stage. */
  timings: Record<string, number>;
  kernels: KernelsSummary | null;
}

/** Whether the graph has a scalar floating-point `loss` output (what a training step differentiates). */
function hasScalarLoss(g: Graph): boolean {
  const id = g.outputs.get("loss");
  const loss = id === undefined ? undefined : g.node(id);
  return loss !== undefined && numel(loss.shape) === 1 && loss.dtype !== "i32";
}

/** The training step's graph: the forward and its backward from `loss` (the same graph the trainer differentiates). */
const stepGraphs = new WeakMap<Graph, Graph>();
function stepOf(g: Graph): Graph {
  let s = stepGraphs.get(g);
  if (!s) {
    s = grad(g, { loss: "loss" });
    stepGraphs.set(g, s);
  }
  return s;
}

function timed<T>(timings: Record<string, number>, stage: string, fn: () => T): T {
  const t0 = performance.now();
  const r = fn();
  timings[stage] = (timings[stage] ?? 0) + (performance.now() - t0) / 1000;
  return r;
}

/** Parameters grouped by top-level module; indexed containers (stages.0, stages.1) by two levels. */
export function componentParams(g: Graph): ComponentParams[] {
  const out = new Map<string, number>();
  for (const p of g.params()) {
    const parts = String(p.attrs.name).split(".");
    const key = parts.length > 2 && /^\d+$/.test(parts[1]) ? `${parts[0]}.${parts[1]}` : parts[0];
    out.set(key, (out.get(key) ?? 0) + p.shape.reduce((a, b) => a * b, 1));
  }
  return [...out].map(([name, params]) => ({ name, params }));
}

/** Writes a file atomically (temp file + rename), so a crash never leaves half an artifact. */
export function writeAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

export async function build(file: string, options: BuildOptions = {}): Promise<BuildResult> {
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  const def = await loadModel(file, { typecheck: options.typecheck });
  timings.load = (performance.now() - t0) / 1000;
  const traceOptions = {
    config: options.config,
    task: options.task,
    batch: options.batch,
    training: options.training,
    imageSize: options.imageSize,
    computeDType: options.precision ?? "f32",
  };
  const traced = timed(timings, "trace", () => traceModel(def, traceOptions));
  const unfused = timed(timings, "optimize", () => dce(cse(traced.graph)));
  const fusion = timed(timings, "fuse", () => fuse(unfused));
  const graph = options.fuse === false ? unfused : fusion.graph;
  const fusions = options.fuse === false ? { windowAttention: 0, fpnMerge: 0, crossAttention: 0 } : fusion.counts;
  const bytes = timed(timings, "bytes", () => {
    const forward = { fused: hbmBytes(fusion.graph).total, unfused: hbmBytes(unfused).total };
    // The training step differentiates the training-mode forward (dropout active) from its `loss`.
    const train = traced.options.training ? unfused : dce(cse(traceModel(def, { ...traceOptions, training: true }).graph));
    if (!hasScalarLoss(train)) return { forward, trainingStep: null };
    const step = (g: Graph) => hbmBytes(stepOf(g)).total;
    return { forward, trainingStep: { fused: step(train === unfused ? fusion.graph : fuse(train).graph), unfused: step(train) } };
  });
  const stats = timed(timings, "count", () => graphStats(graph));
  const result: BuildResult = {
    model: traced.name,
    config: traced.configName,
    task: traced.task,
    batch: traced.options.batch,
    traced,
    graph,
    stats,
    flopsPerSample: stats.flops / traced.options.batch,
    components: componentParams(graph),
    fusions,
    hbmBytes: bytes,
    outDir: undefined,
    artifacts: [],
    timings,
    kernels: null,
  };
  // A training build lowers the training step: the forward and backward of the training-mode trace.
  const trainingStep = options.training === true && hasScalarLoss(unfused);
  const lowered =
    options.kernels === false
      ? undefined
      : timed(timings, "lower", () =>
          trainingStep
            ? lowerStage(stepOf(graph), stepOf(unfused), options.fuse !== false)
            : lowerStage(graph, unfused, options.fuse !== false),
        );
  if (lowered) {
    const { plan } = lowered.lowered;
    result.kernels = {
      graph: lowered.graph,
      step: trainingStep ? "training step" : "forward",
      reason: lowered.reason ?? null,
      launches: plan.launches.length,
      kernels: plan.modules.length,
      buffers: plan.buffers.length,
      ptxas: null,
      assembled: 0,
      spills: 0,
      maxRegisters: null,
    };
  }
  if (options.write !== false) {
    timed(timings, "write", () => {
      const dir = options.out ?? path.join("dist", `${traced.name}-${traced.configName}`);
      mkdirSync(dir, { recursive: true });
      const name = `${traced.name}-${traced.configName}`;
      writeAtomic(path.join(dir, "graph.json"), JSON.stringify(graphToJSON(graph)));
      writeAtomic(path.join(dir, "graph.txt"), printGraph(graph, name));
      result.outDir = dir;
      result.artifacts.push(path.join(dir, "graph.json"), path.join(dir, "graph.txt"));
    });
  }
  if (lowered && result.outDir && result.kernels) {
    const t0 = performance.now();
    const { plan, programs } = lowered.lowered;
    const k = await writeKernels(result.outDir, plan.modules, programs, { requirePtxas: options.requirePtxas });
    writeAtomic(path.join(result.outDir, "plan.json"), JSON.stringify(planToJSON(plan)));
    result.artifacts.push(path.join(result.outDir, "kernels"), path.join(result.outDir, "plan.json"));
    const regs = k.table.kernels.map((r) => r.registers).filter((r): r is number => r !== undefined);
    Object.assign(result.kernels, {
      ptxas: k.table.ptxas,
      assembled: k.assembled,
      spills: k.spilling.length,
      maxRegisters: regs.length ? Math.max(...regs) : null,
    });
    timings.codegen = (performance.now() - t0) / 1000;
  }
  return result;
}
