// Graph -> ExecutablePlan. Named stages, in order:
//   analyse   every node's disposition (analysis.ts): GEMM chains, folded transposes, elementwise
//             regions, gather chains, views, single-op kernels
//   emit      walk the graph in order; each materialised node gets its buffer and its launches
//   outputs   graph outputs get role "output" (a copy where an output would alias a feed)
//   liveness  first and last launch of every buffer (views count for their owner)
// An op without a kernel is a UserError at the node's source line: nothing falls back silently.

import type { Graph, Node } from "../ir/index.ts";
import { f32 as f32c, i32 as i32c, type KernelProgram } from "../tile/index.ts";
import { type Analysis, analyse, contiguousSliceOffset } from "./analysis.ts";
import { LowerContext } from "./context.ts";
import { launchCopy, launchGather } from "./gather.ts";
import { lowerGatherChain } from "./layout.ts";
import { type PackLayout, packLayout } from "./pack.ts";
import { Packing } from "./packing.ts";
import type { ExecutablePlan, PlanBuffer } from "./plan.ts";
import { lowerRegion } from "./rules/elementwise.ts";
import "./rules/index.ts";
import { lowerMatmulChain } from "./rules/matmul.ts";
import { loweringRule, whyUnlowerable } from "./rules/registry.ts";

export interface LowerOptions {
  /** Round bf16 intermediates inside fused elementwise kernels as the unfused graph would (default true). */
  readonly roundBf16?: boolean;
  /**
   * Lay the parameters out in one f32 buffer "$params" (pack.ts: `true` = every f32 parameter in
   * graph order): one allocation a trainer binds, and one launch casting every packed master to its
   * bf16 copy. Default: a buffer per parameter.
   */
  readonly packParams?: boolean | PackLayout;
  /** Lay these outputs out in one output buffer `name` (a training step's gradients). */
  readonly packOutputs?: { readonly name: string; readonly layout: PackLayout };
}

export interface LoweredGraph {
  readonly plan: ExecutablePlan;
  /** One program per module, in module order (for ptxas and the kernel table). */
  readonly programs: readonly KernelProgram[];
  readonly analysis: Analysis;
}

/** Constants up to this many elements are stored expanded; larger splats are filled by a kernel. */
const CONST_EXPAND_LIMIT = 1 << 16;

function lowerSource(ctx: LowerContext, n: Node, packing: Packing): void {
  const name = String(n.attrs.name);
  if (n.op === "input") {
    const b = ctx.newBuffer(n.shape, n.dtype, "input", { name });
    ctx.inputs[name] = b;
    ctx.valueBuffer.set(n.id, b);
    return;
  }
  if (n.op === "param") {
    const b = packing.paramBuffer(n) ?? ctx.newBuffer(n.shape, n.dtype, "param", { name });
    ctx.params[name] = b;
    ctx.valueBuffer.set(n.id, b);
    return;
  }
  const data = n.attrs.data as Float32Array | Int32Array;
  const count = n.shape.reduce((a, b) => a * b, 1);
  if (data.length === count || count <= CONST_EXPAND_LIMIT) {
    const full =
      data.length === count
        ? data
        : n.dtype === "i32"
          ? new Int32Array(count).fill(data[0])
          : new Float32Array(count).fill(data[0]);
    ctx.valueBuffer.set(n.id, ctx.constBuffer(n.shape, n.dtype, full));
    return;
  }
  const out = ctx.define(n);
  const v = data[0];
  launchGather(ctx, {
    out,
    shape: n.shape,
    dtype: n.dtype,
    value: () => (n.dtype === "i32" ? i32c(v) : f32c(v)),
    nodes: [n.id],
    what: "fill",
  });
}

function lowerView(ctx: LowerContext, n: Node): void {
  const src = ctx.bufferOf(n.inputs[0]);
  const offset =
    n.op === "segment"
      ? (n.attrs.offset as number)
      : n.op === "slice"
        ? (contiguousSliceOffset(n, ctx.graph.nodes) as number)
        : 0;
  ctx.valueBuffer.set(n.id, ctx.alias(src, n.shape, n.dtype, offset));
}

function bindOutputs(ctx: LowerContext, packing: Packing): void {
  for (const [name, id] of ctx.graph.outputs) {
    if (packing.bindPackedOutput(name, id)) continue;
    let b = ctx.bufferOf(id);
    const buf = ctx.buffers[b];
    const owner = ctx.buffers[buf.aliasOf ? buf.aliasOf.buffer : b];
    if (owner.role !== "temp" && owner.role !== "output") {
      // An output that is a feed (or a view of one) gets its own copy: executors own outputs.
      const copy = ctx.newBuffer(buf.shape, buf.dtype, "output", { name });
      launchCopy(ctx, b, copy, [id]);
      b = copy;
    } else if (buf.role === "temp") {
      buf.role = "output";
      buf.name = name;
    }
    ctx.outputs[name] = b;
  }
}

function liveness(ctx: LowerContext): PlanBuffer[] {
  const first = new Array<number>(ctx.buffers.length).fill(-1);
  const last = new Array<number>(ctx.buffers.length).fill(-1);
  const touch = (b: number, i: number) => {
    if (first[b] < 0) first[b] = i;
    last[b] = i;
  };
  ctx.launches.forEach((l, i) => {
    for (const b of [...l.reads, ...l.writes]) touch(b, i);
  });
  const end = ctx.launches.length - 1;
  // Owners live as long as any view of them; an output (or the owner of an output view) to the end.
  for (const b of ctx.buffers) {
    const owner = b.aliasOf?.buffer;
    const keep = b.role === "output" && first[b.id] >= 0;
    if (owner !== undefined && first[b.id] >= 0) {
      touch(owner, first[b.id]);
      first[owner] = Math.min(first[owner], first[b.id]);
      last[owner] = Math.max(last[owner], keep ? end : last[b.id]);
    }
    if (keep) last[b.id] = end;
  }
  return ctx.buffers.map((b) => ({
    id: b.id,
    bytes: b.bytes,
    dtype: b.dtype,
    shape: b.shape,
    role: b.role,
    ...(b.name !== undefined ? { name: b.name } : {}),
    ...(b.data ? { data: b.data } : {}),
    ...(b.aliasOf ? { aliasOf: b.aliasOf } : {}),
    firstUse: first[b.id],
    lastUse: last[b.id],
  }));
}

/** The plan of a finished lowering: liveness, then the plan's fields from the context. */
export function assemblePlan(ctx: LowerContext): ExecutablePlan {
  const buffers = liveness(ctx);
  return {
    format: "ptc-plan",
    version: 1,
    modules: ctx.modules,
    buffers,
    launches: ctx.launches,
    inputs: ctx.inputs,
    params: ctx.params,
    outputs: ctx.outputs,
    ...(ctx.seedBuffer !== undefined ? { seed: ctx.seedBuffer } : {}),
    ...(Object.keys(ctx.packs).length > 0 ? { packs: ctx.packs } : {}),
  };
}

function paramLayout(graph: Graph, o: LowerOptions["packParams"]): PackLayout | undefined {
  if (!o) return undefined;
  if (o !== true) return o;
  return packLayout(
    graph
      .params()
      .filter((p) => p.dtype === "f32")
      .map((p) => ({ name: String(p.attrs.name), shape: p.shape })),
  );
}

export function lowerGraph(graph: Graph, options: LowerOptions = {}): LoweredGraph {
  const analysis = analyse(graph);
  const ctx = new LowerContext(graph, analysis);
  ctx.roundBf16 = options.roundBf16 ?? true;
  const packing = new Packing(ctx, { params: paramLayout(graph, options.packParams), outputs: options.packOutputs });
  for (const n of graph.nodes) {
    switch (analysis.kind[n.id]) {
      case "source":
        lowerSource(ctx, n, packing);
        break;
      case "view":
        lowerView(ctx, n);
        break;
      case "gemm":
        lowerMatmulChain(ctx, n);
        break;
      case "region":
        if (!packing.handlesRegion(n)) lowerRegion(ctx, n, { roundBf16: options.roundBf16 });
        break;
      case "gather":
        lowerGatherChain(ctx, n);
        break;
      case "kernel": {
        const rule = loweringRule(n.op) ?? ctx.unsupported(n);
        const why = whyUnlowerable(n, graph);
        if (why) ctx.unsupported(n, why);
        rule(ctx, n);
        break;
      }
      default:
        break; // computed inside another node's kernel
    }
  }
  packing.finishOutputs();
  bindOutputs(ctx, packing);
  return { plan: assemblePlan(ctx), programs: ctx.programs, analysis };
}

/** Ops of `graph` (sorted, unique) that would become single-op kernels but have none for their configuration. */
export function unloweredOps(graph: Graph): string[] {
  const analysis = analyse(graph);
  const missing = new Set<string>();
  for (const n of graph.nodes) if (analysis.kind[n.id] === "kernel" && whyUnlowerable(n, graph)) missing.add(n.op);
  return [...missing].sort();
}

/** Each op of `graph` without a kernel for its configuration, with the first reason (sorted by op). */
export function unlowerable(graph: Graph): { op: string; why: string }[] {
  const analysis = analyse(graph);
  const found = new Map<string, string>();
  for (const n of graph.nodes) {
    if (analysis.kind[n.id] !== "kernel" || found.has(n.op)) continue;
    const why = whyUnlowerable(n, graph);
    if (why) found.set(n.op, why);
  }
  return [...found].sort((a, b) => a[0].localeCompare(b[0])).map(([op, why]) => ({ op, why }));
}
