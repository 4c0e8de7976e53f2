// Packs inside one lowering (the layouts are pack.ts's):
//
//   params   every packed parameter is a view of one f32 owner "$params" (plan.packs), so a trainer
//            binds all its weights as one allocation; each pure cast of a packed parameter
//            (f32 master -> bf16 copy) becomes a view of one cast pack at the same offset, all of them
//            written by ONE multi-tensor launch before the first needs it
//   outputs  the named outputs (a training step's gradients) are views of one output owner; an output
//            whose value is a pure cast (bf16 gradient -> f32) has its source placed in a bf16 pack
//            at the same offset, and one launch at the end casts them all
//
// Placement is a hint to ctx.define: a node whose rule defines its value somewhere else (a view) is
// checked at the end and cast or copied on its own, so the plan is right whatever the rules do.

import { packedCastKernel } from "../../kernels/multi-tensor.ts";
import { type Node, numel } from "../ir/index.ts";
import type { DType } from "../ir/types.ts";
import type { LowerContext } from "./context.ts";
import { launchCopy } from "./gather.ts";
import { cachedKernel } from "./kernel-cache.ts";
import { CHUNK_ELEMENTS_DEFAULT, chunkTable, type PackLayout } from "./pack.ts";
import { deviceBytes } from "./plan.ts";
import { lowerRegion } from "./rules/elementwise.ts";

export interface PackOptions {
  /** Parameters in one f32 buffer "$params" at these offsets (members not in the graph stay padding). */
  readonly params?: PackLayout;
  /** Graph outputs in one buffer named `name` at these offsets. */
  readonly outputs?: { readonly name: string; readonly layout: PackLayout };
}

interface CastMember {
  /** The cast node (its value is the member). */
  readonly node: number;
  readonly offset: number;
  readonly size: number;
}

interface CastGroup {
  readonly src: number;
  readonly dst: number;
  readonly members: CastMember[];
  emitted: boolean;
}

export class Packing {
  /** Cast node -> the group that computes it (parameter casts, emitted on first use). */
  private readonly paramCasts = new Map<number, CastGroup>();
  /** Output casts computed at the end, by source dtype. */
  private readonly outputCasts = new Map<DType, CastGroup>();
  private readonly deferred = new Set<number>();
  private readonly outputOffsets = new Map<string, number>();
  private outputOwner: number | undefined;
  private readonly paramOffsets = new Map<string, number>();
  private paramOwner: number | undefined;

  constructor(
    private readonly ctx: LowerContext,
    options: PackOptions,
  ) {
    if (options.params) this.packParams(options.params);
    if (options.outputs) this.packOutputs(options.outputs.name, options.outputs.layout);
  }

  /** A pure single-op cast region between float types: [cast] with its one input. */
  private pureCast(id: number): Node | undefined {
    const ctx = this.ctx;
    const n = ctx.graph.node(id);
    const region = ctx.analysis.regions.get(id);
    if (n.op !== "cast" || !region || region.length !== 1 || n.dtype === "i32") return undefined;
    return ctx.graph.node(n.inputs[0]).dtype === "i32" ? undefined : n;
  }

  private packParams(layout: PackLayout): void {
    const ctx = this.ctx;
    const owner = ctx.newBuffer([layout.elements], "f32", "param", { name: "$params" });
    this.paramOwner = owner;
    const offsets: Record<string, number> = {};
    for (const m of layout.members) {
      offsets[m.name] = m.offset;
      this.paramOffsets.set(m.name, m.offset);
    }
    ctx.packs.$params = { buffer: owner, offsets };
    const byDtype = new Map<DType, CastGroup>();
    for (const p of ctx.graph.params()) {
      const offset = this.paramOffsets.get(String(p.attrs.name));
      if (offset === undefined) continue;
      if (p.dtype !== "f32") throw new Error(`lower: packed parameter ${String(p.attrs.name)} is ${p.dtype}, packs hold f32`);
      for (const u of ctx.analysis.users[p.id]) {
        const cast = this.pureCast(u);
        if (!cast || ctx.analysis.outputs.has(u) || cast.dtype === "f32") continue;
        let g = byDtype.get(cast.dtype);
        if (!g) {
          g = { src: owner, dst: ctx.newBuffer([layout.elements], cast.dtype), members: [], emitted: false };
          byDtype.set(cast.dtype, g);
        }
        g.members.push({ node: u, offset, size: numel(p.shape) });
        this.paramCasts.set(u, g);
      }
    }
  }

  /** The buffer of a packed parameter (a view of "$params"), or undefined when it is not packed. */
  paramBuffer(n: Node): number | undefined {
    const offset = this.paramOffsets.get(String(n.attrs.name));
    if (offset === undefined || this.paramOwner === undefined) return undefined;
    const ctx = this.ctx;
    return ctx.newBuffer(n.shape, n.dtype, "param", {
      name: String(n.attrs.name),
      aliasOf: { buffer: this.paramOwner, offsetBytes: offset * deviceBytes("f32") },
    });
  }

  private packOutputs(name: string, layout: PackLayout): void {
    const ctx = this.ctx;
    const g = ctx.graph;
    const members = layout.members.filter((m) => g.outputs.has(m.name));
    const dtypes = new Set(members.map((m) => g.node(g.outputs.get(m.name) as number).dtype));
    if (dtypes.size > 1) throw new Error(`lower: output pack ${name} mixes ${[...dtypes].join(" and ")}`);
    const dtype = [...dtypes][0] ?? "f32";
    const owner = ctx.newBuffer([layout.elements], dtype, "output", { name });
    this.outputOwner = owner;
    ctx.outputs[name] = owner;
    const offsets: Record<string, number> = {};
    for (const m of layout.members) offsets[m.name] = m.offset;
    ctx.packs[name] = { buffer: owner, offsets };
    const placed = new Set<number>();
    for (const m of members) {
      const id = g.outputs.get(m.name) as number;
      this.outputOffsets.set(m.name, m.offset);
      if (placed.has(id) || numel(g.node(id).shape) !== m.size) continue;
      placed.add(id);
      ctx.placeAt.set(id, { owner, offset: m.offset });
      this.deferOutputCast(id, m.offset, m.size, placed);
    }
  }

  /** An output that is a pure cast of a value some kernel defines: that value goes to a source pack. */
  private deferOutputCast(id: number, offset: number, size: number, placed: Set<number>): void {
    const ctx = this.ctx;
    const cast = this.pureCast(id);
    if (!cast || ctx.analysis.users[id].length > 0) return;
    let s = ctx.graph.node(cast.inputs[0]);
    while (ctx.analysis.kind[s.id] === "view" && s.op === "reshape" && !ctx.analysis.outputs.has(s.id))
      s = ctx.graph.node(s.inputs[0]);
    const k = ctx.analysis.kind[s.id];
    const definable = k === "gemm" || k === "region" || k === "gather" || k === "kernel";
    if (!definable || ctx.analysis.outputs.has(s.id) || placed.has(s.id) || numel(s.shape) !== size) return;
    placed.add(s.id);
    let g = this.outputCasts.get(s.dtype);
    if (!g) {
      g = {
        src: ctx.newBuffer([ctx.buffers[this.outputOwner as number].shape[0]], s.dtype),
        dst: this.outputOwner as number,
        members: [],
        emitted: false,
      };
      this.outputCasts.set(s.dtype, g);
    }
    ctx.placeAt.set(s.id, { owner: g.src, offset });
    g.members.push({ node: id, offset, size });
    this.deferred.add(id);
  }

  /**
   * Called for each region root before it is lowered: true when the packing computes it (a packed
   * parameter cast, emitted now with its whole group, or an output cast deferred to the end).
   */
  handlesRegion(root: Node): boolean {
    if (this.deferred.has(root.id)) return true;
    const g = this.paramCasts.get(root.id);
    if (!g) return false;
    if (!g.emitted) this.emitCast(g, g.members);
    return true;
  }

  private emitCast(g: CastGroup, members: readonly CastMember[]): void {
    const ctx = this.ctx;
    g.emitted = true;
    for (const m of members) {
      const n = ctx.graph.node(m.node);
      ctx.valueBuffer.set(m.node, ctx.alias(g.dst, n.shape, n.dtype, m.offset));
    }
    if (members.length === 0) return;
    const table = chunkTable(members, CHUNK_ELEMENTS_DEFAULT);
    const from = ctx.buffers[g.src].dtype as "f32" | "bf16";
    const to = ctx.buffers[g.dst].dtype as "f32" | "bf16";
    ctx.launch(
      cachedKernel(packedCastKernel, { from, to }),
      {
        table: { buffer: ctx.constBuffer([table.length], "i32", table) },
        src: { buffer: g.src },
        dst: { buffer: g.dst },
        chunks: table.length / 3,
      },
      {
        writes: ["dst"],
        nodes: members.map((m) => m.node),
        label: `cast x${members.length} (packed ${from} -> ${to})`,
      },
    );
  }

  /** After every node: the deferred output casts (one launch per source dtype), then fallbacks. */
  finishOutputs(): void {
    const ctx = this.ctx;
    for (const g of this.outputCasts.values()) {
      const ready: CastMember[] = [];
      for (const m of g.members) {
        const src = ctx.graph.node(m.node).inputs[0];
        const at = ctx.rootOf(ctx.bufferOf(src));
        if (at.root === g.src && at.offset === m.offset) ready.push(m);
        else lowerRegion(ctx, ctx.graph.node(m.node)); // its source landed elsewhere: a cast of its own
      }
      this.emitCast(g, ready);
    }
  }

  /** bindOutputs' part for packed outputs: true when `name` is a member (its value now in its slot). */
  bindPackedOutput(name: string, id: number): boolean {
    const offset = this.outputOffsets.get(name);
    if (offset === undefined || this.outputOwner === undefined) return false;
    const ctx = this.ctx;
    const n = ctx.graph.node(id);
    let b = ctx.bufferOf(id);
    const at = ctx.rootOf(b);
    if (at.root !== this.outputOwner || at.offset !== offset) {
      const slot = ctx.alias(this.outputOwner, n.shape, n.dtype, offset);
      launchCopy(ctx, b, slot, [id]);
      b = slot;
    }
    const buf = ctx.buffers[b];
    buf.role = "output";
    buf.name = name;
    ctx.outputs[name] = b;
    return true;
  }
}
